"""Training-step suite on this machine's CPU: SALT, I-JEPA and the stage-1 MAE at ViT-Ti,
ViT-S and ViT-B, with MFU against a matmul peak measured in the same run.

Every (method, size) runs in its own process (so peak memory is its own) on the same
seeded batches: 224-px single-channel images, patch 16, batch ``--batch``; SALT and
I-JEPA with one context block (0.85-1.0) and four target blocks (0.15-0.2), the one-pass
predictor (width 384, depth 6, 12 heads; the recipe's is deeper), SALT's frozen teacher
of the student's size (in fp32 like everything else, so one matmul peak applies); MAE
with 75 % random masking and the recipe's decoder (width 512, depth 8, 16 heads). AdamW.
Reported: images/s (median of the timed steps), GFLOP per image of a training step
(``torch.utils.flop_counter``; matmuls and attention, the CPU's fused attention counted by
``common.flop_counter``), achieved GFLOP/s, MFU (achieved
over the fp32 matmul peak, a 2048 x 2048 matmul on the same threads, the faster of
``torch.mm`` and oneDNN (``common.cpu_matmul_peak``), measured in the row's process
right after its timed steps) and peak resident memory;
``--repeats`` rounds over the rows, interleaved, medians. ``benchmarks/perf/gpu_step.py`` is the GPU
counterpart.

    python -m benchmarks.perf.step_suite [--steps 3] [--batch 8] [--threads 2] [--repeats 2]

Writes ``results/perf/step_suite/step_suite.{csv,md,json}`` and every run to
``step_suite_runs.csv``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (
    cpu_matmul_peak,
    flop_counter,
    interleaved,
    peak_rss_gb,
    record_env,
    results_dir,
    summarise,
)

ROOT = Path(__file__).resolve().parents[2]
OUT = results_dir(__file__)
SIZES = {
    "ViT-Ti/16": {"embed_dim": 192, "depth": 12, "num_heads": 3},
    "ViT-S/16": {"embed_dim": 384, "depth": 12, "num_heads": 6},
    "ViT-B/16": {"embed_dim": 768, "depth": 12, "num_heads": 12},
}
METHODS = ("SALT", "I-JEPA (EMA)", "MAE (stage 1)")


def build(method: str, size: str) -> tuple[Any, Any]:
    """The module and its mask generator."""
    from usjepa.masks import MultiBlockMaskGenerator, RandomMaskGenerator
    from usjepa.methods import IJEPAModule, MAEModule, SALTModule
    from usjepa.models import JEPAPredictor, MAEDecoder, ViTEncoder

    vit = {"img_size": 224, "patch_size": 16, "in_chans": 1, **SIZES[size]}
    width = vit["embed_dim"]
    if method == "MAE (stage 1)":
        decoder = MAEDecoder(14, width, 256, width=512, depth=8, num_heads=16)
        return MAEModule(ViTEncoder(**vit, init_seed=0), decoder), RandomMaskGenerator(14)
    blocks = MultiBlockMaskGenerator(
        14, num_targets=4, context_scale=(0.85, 1.0), target_scale=(0.15, 0.2)
    )
    predictor = JEPAPredictor(14, width, width, width=384, depth=6, num_heads=12, one_pass=True)
    if method == "SALT":
        teacher = ViTEncoder(**vit, init_seed=1)
        return SALTModule(ViTEncoder(**vit, init_seed=0), predictor, teacher), blocks
    return IJEPAModule(ViTEncoder(**vit, init_seed=0), predictor), blocks


def measure(method: str, size: str, steps: int, batch: int, threads: int) -> dict[str, Any]:
    """Time ``steps`` training steps of ``method`` at ``size`` in this process."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    module, masks = build(method, size)
    g = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(steps + 1):
        context, targets = masks(batch, g)
        image = torch.randn(batch, 1, 224, 224, generator=g)
        batches.append({"image": image, "context": context, "targets": targets})
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    ema = getattr(module, "update_target", None)

    def step(b: dict[str, Any]) -> None:
        loss = module.step_loss(b)[0]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)  # as PretrainModule.optimizer_step does
        if ema is not None:
            ema(0.996)

    with flop_counter() as counter:
        step(batches[0])  # also the warm-up
    times = []
    for b in batches[1:]:
        start = time.perf_counter()
        step(b)
        times.append(time.perf_counter() - start)
    rss = peak_rss_gb()
    # the machine's rate right after the steps (not before: the matmul's large buffers
    # would change how the C allocator serves the step, and so its resident memory)
    peak = cpu_matmul_peak()
    ips = batch / statistics.median(times)
    gflop = counter.get_total_flops() / batch / 1e9
    return {
        "images_per_s": ips,
        "gflop_per_image": gflop,
        "achieved_gflops": ips * gflop,
        "matmul_peak_gflops": peak,
        "mfu": ips * gflop / peak,
        "peak_rss_gb": rss,
        "trainable_params_m": sum(p.numel() for p in params) / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--repeats", type=int, default=2, help="rounds over the rows (interleaved); medians"
    )
    parser.add_argument("--sizes", default=",".join(SIZES), help="comma-separated sizes")
    parser.add_argument("--out", default=str(OUT), help="the folder to write to")
    parser.add_argument("--row", default=None, help=argparse.SUPPRESS)  # child: method|size
    args = parser.parse_args()
    if args.row is not None:
        method, size = args.row.split("|")
        print(json.dumps(measure(method, size, args.steps, args.batch, args.threads)))
        return
    import pandas as pd

    sizes = args.sizes.split(",")
    unknown = sorted(set(sizes) - set(SIZES))
    if unknown:
        sys.exit(f"step_suite: unknown size {unknown}; choose from {', '.join(SIZES)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = [f"{method}|{size}" for size in sizes for method in METHODS]
    runs = interleaved(
        __file__, names, args.repeats, "row", steps=args.steps, batch=args.batch,
        threads=args.threads,
    )  # fmt: skip
    table = summarise(pd.DataFrame(runs), ["row"])
    table[["method", "size"]] = table.row.str.split("|", expand=True)
    table = table.drop(columns="row")
    rows = table.to_dict("records")
    table.to_csv(out / "step_suite.csv", index=False)
    pd.DataFrame(runs).to_csv(out / "step_suite_runs.csv", index=False)
    (out / "step_suite.json").write_text(
        json.dumps({"threads": args.threads, "rows": rows}, indent=1) + "\n"
    )
    peaks = table.matmul_peak_gflops
    lines = [
        "# Training steps on the CPU: SALT, I-JEPA and the stage-1 MAE at "
        + ("three sizes" if len(sizes) == 3 else ", ".join(sizes)),
        "",
        f"224-px single-channel images, patch 16, batch {args.batch}, AdamW, "
        f"{args.threads} threads; JEPA methods: 1 context block (0.85-1.0), 4 target blocks "
        "(0.15-0.2), one-pass predictor 384 / 6 / 12 heads (SALT: frozen fp32 teacher of "
        "the student's size; I-JEPA: EMA target encoder); MAE: 75 % random masking, decoder "
        f"512 / 8 / 16 heads. images/s is the median of {args.steps} timed steps; each row "
        f"in its own process, {args.repeats} rounds over the rows interleaved, each figure "
        "the median of the rounds (the images/s range beside it; every run in "
        "`step_suite_runs.csv`). GFLOP/image: `torch.utils.flop_counter`, the CPU's fused "
        "attention counted too. MFU: achieved GFLOP/s over the fp32 matmul peak (2048 x "
        "2048, same threads, best of 10, the faster of `torch.mm` and oneDNN's linear op) "
        "measured in the row's own process right after its timed steps, so that the "
        "machine's drift hits both alike; the peaks "
        f"ranged from {peaks.min():.0f} to {peaks.max():.0f} GFLOP/s. "
        "Command: `python -m benchmarks.perf.step_suite"
        + "".join(f" {a}" for a in sys.argv[1:])
        + "`.",
        "",
        "| method | size | images/s | images/s, range | GFLOP/image | GFLOP/s | matmul peak "
        "(GFLOP/s) | MFU | peak RSS (GB) | trainable params (M) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table.itertuples():
        lines.append(
            f"| {r.method} | {r.size} | {r.images_per_s:.2f} | {r.images_per_s_range} | "
            f"{r.gflop_per_image:.1f} | {r.achieved_gflops:.0f} | "
            f"{r.matmul_peak_gflops:.0f} | {r.mfu:.0%} | {r.peak_rss_gb:.2f} | "
            f"{r.trainable_params_m:.1f} |"
        )
    record_env(out / "step_suite.md")
    (out / "step_suite.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
