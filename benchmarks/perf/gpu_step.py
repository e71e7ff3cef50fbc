"""The GPU benchmark: ViT-B/16 SALT and EMA (I-JEPA) steps in bf16, images/s and MFU.

Ready for a machine with one CUDA GPU; runs whole in well under 5 minutes. ViT-B/16 at
224 px, batch 256, predictor width 384 / depth 12 / 16 heads (SALT's), 1 context block
(0.85-1.0) and 4 target blocks (0.15-0.2) drawn per image, AdamW, bf16 autocast (the
recipe's ``bf16-mixed``). Rows, each timed over ``--steps`` steps after warm-up:

- SALT, one pass, frozen bf16 teacher, fused AdamW (every fast path on; the GPU recipes set
  only the one-pass predictor, the rest are switches: README, "Speed and memory switches");
- the same with the fp32 teacher, with the per-block predictor, with the for-each
  AdamW, with full and with selective activation checkpointing, with compiled blocks
  (before/after rows);
- I-JEPA (EMA target encoder), one pass, fused AdamW.

MFU is the step's FLOPs (``torch.utils.flop_counter``) per second over the bf16 matmul
peak measured in the same run (a large ``torch.mm``), and over the card's datasheet peak
when ``--peak-tflops`` is given. Host-device synchronisations inside one step are counted
with ``torch.cuda.set_sync_debug_mode``.

    python -m benchmarks.perf.gpu_step [--steps 10] [--batch 256] [--peak-tflops 989]

Writes ``results/perf/gpu_step/gpu_step.{csv,md,json}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from benchmarks.common import flop_counter, matmul_peak, record_env, results_dir

ROOT = Path(__file__).resolve().parents[2]
OUT = results_dir(__file__)
VIT_B = {"img_size": 224, "patch_size": 16, "embed_dim": 768, "depth": 12, "num_heads": 12}
#: SALT's predictor for ViT-B/16
PRED_B = {"width": 384, "depth": 12, "num_heads": 16}

#: row -> options (method, one_pass, teacher_dtype, fused, checkpointing, compile)
ROWS: dict[str, dict[str, Any]] = {
    "SALT, all fast paths": {"method": "salt"},
    "SALT, fp32 teacher": {"method": "salt", "teacher_dtype": None},
    "SALT, per-block predictor": {"method": "salt", "one_pass": False},
    "SALT, for-each AdamW": {"method": "salt", "fused": False},
    "SALT, activation checkpointing": {"method": "salt", "activation_checkpointing": True},
    "SALT, selective checkpointing": {"method": "salt", "activation_checkpointing": "selective"},
    "SALT, compiled blocks": {"method": "salt", "compile_blocks": True},
    "I-JEPA (EMA), one pass": {"method": "ijepa"},
}


def build(
    opts: dict[str, Any], vit: dict[str, Any] | None = None, pred: dict[str, Any] | None = None
) -> Any:
    """The row's module: ViT-B/16 and SALT's predictor unless ``vit`` and ``pred`` say
    otherwise (the tests build every row small)."""
    from usjepa.methods import IJEPAModule, SALTModule
    from usjepa.models import JEPAPredictor, ViTEncoder

    vit, pred = vit or VIT_B, pred or PRED_B
    grid, dim = vit["img_size"] // vit["patch_size"], vit["embed_dim"]

    common = {
        "activation_checkpointing": opts.get("activation_checkpointing", False),
        "compile_blocks": opts.get("compile_blocks", False),
    }
    predictor = JEPAPredictor(grid, dim, dim, **pred, one_pass=opts.get("one_pass", True))
    if opts["method"] == "ijepa":
        return IJEPAModule(ViTEncoder(**vit, init_seed=0), predictor, **common)
    return SALTModule(
        ViTEncoder(**vit, init_seed=0),
        predictor,
        ViTEncoder(**vit, init_seed=1),
        teacher_dtype=opts.get("teacher_dtype", "bfloat16"),
        **common,
    )


def measure(
    opts: dict[str, Any],
    steps: int,
    batch: int,
    device: str = "cuda",
    vit: dict[str, Any] | None = None,
    pred: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Time one row; ``device="cpu"`` (with small ``vit`` and ``pred``) runs the same code
    path without the CUDA-only figures (syncs, peak memory), so the tests can check every
    row before a GPU is at hand."""
    import torch
    from lightning.fabric.utilities.apply_func import move_data_to_device

    from usjepa.masks import MultiBlockMaskGenerator

    cuda = device == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    torch.manual_seed(0)
    vit = vit or VIT_B
    size = vit["img_size"]
    module = build(opts, vit, pred).to(device)
    masks = MultiBlockMaskGenerator(
        size // vit["patch_size"], num_targets=4, context_scale=(0.85, 1.0),
        target_scale=(0.15, 0.2),
    )  # fmt: skip
    g = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(steps + 3):
        context, targets = masks(batch, g)
        image = torch.randn(batch, 1, size, size)
        host = {"image": image, "context": context, "targets": targets}
        batches.append(move_data_to_device(host, device))
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, fused=opts.get("fused", True))

    def step(b: dict[str, Any]) -> None:
        with torch.autocast(device, torch.bfloat16):
            loss, _ = module.step_loss(b)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)  # as PretrainModule.optimizer_step does
        if opts["method"] == "ijepa":
            module.update_target(0.996)

    flops = float("nan")
    if not opts.get("compile_blocks"):
        with flop_counter() as counter:
            step(batches[0])
        flops = counter.get_total_flops() / batch
    for b in batches[1:3]:
        step(b)
    sync()
    syncs = float("nan")
    if cuda:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            step(batches[3])
            torch.cuda.set_sync_debug_mode("default")
        syncs = sum("synchroniz" in str(w.message) for w in caught)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for b in batches[3:]:
        step(b)
    sync()
    per_step = (time.perf_counter() - start) / steps
    return {
        "images_per_s": batch / per_step,
        "gflop_per_image": flops / 1e9,
        "achieved_tflops": flops * batch / per_step / 1e12,
        "peak_memory_gb": torch.cuda.max_memory_allocated() / 1e9 if cuda else float("nan"),
        "syncs_per_step": syncs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--peak-tflops", type=float, default=None, help="datasheet bf16 peak")
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated row names")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        sys.exit("gpu_step: no CUDA device here; run it on a machine with a GPU")
    import pandas as pd

    peak = matmul_peak("cuda", torch.bfloat16, n=8192, reps=20) / 1e3  # TFLOP/s
    print(f"measured bf16 matmul peak: {peak:.0f} TFLOP/s", flush=True)
    rows = []
    for name in args.rows.split(","):
        try:
            result = measure(ROWS[name], args.steps, args.batch)
        except torch.OutOfMemoryError:
            result = {"images_per_s": float("nan"), "error": "out of memory"}
        torch.cuda.empty_cache()
        result["mfu_measured_peak"] = result.get("achieved_tflops", float("nan")) / peak
        if args.peak_tflops:
            result["mfu_datasheet"] = result.get("achieved_tflops", float("nan")) / args.peak_tflops
        rows.append({"row": name, **result})
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(OUT / "gpu_step.csv", index=False)
    device = torch.cuda.get_device_name()
    (OUT / "gpu_step.json").write_text(
        json.dumps({"device": device, "matmul_peak_tflops": peak, "rows": rows}, indent=1)
    )
    lines = [
        f"# ViT-B/16 steps on {device}, bf16 autocast, batch {args.batch}",
        "",
        f"Measured bf16 matmul peak {peak:.0f} TFLOP/s; MFU is the step's FLOPs per second "
        f"over it. {args.steps} timed steps per row. "
        "Command: `python -m benchmarks.perf.gpu_step`.",
        "",
        "| row | images/s | GFLOP/image | TFLOP/s | MFU (measured peak) | peak memory (GB) "
        "| syncs/step |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        gflop = r.get("gflop_per_image", float("nan"))
        lines.append(
            f"| {r['row']} | {r['images_per_s']:.0f} | {gflop:.1f} "
            f"| {r.get('achieved_tflops', float('nan')):.0f} | {r['mfu_measured_peak']:.1%} "
            f"| {r.get('peak_memory_gb', float('nan')):.1f} | {r.get('syncs_per_step', '')} |"
        )
    record_env(OUT / "gpu_step.md")
    (OUT / "gpu_step.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
