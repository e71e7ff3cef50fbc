"""Fast paths of the SALT training step, each measured before and after in one run.

Settings of issue 13 (the comparison with stable-pretraining's SALT): ViT-S/16 student at
224 px, batch 16, predictor width 384 / depth 6 / 12 heads, one context block
(scale 0.85-1.0) and four target blocks (0.15-0.2) on the 14 x 14 grid, a frozen teacher
of the student's size, AdamW, CPU threads as given. Every variant runs in its own process
(so peak memory is its own), on the same seeded batches, and reports images/s (best of
the timed steps), GFLOP per image of one training step (``torch.utils.flop_counter``)
and the process's peak resident memory.

    python benchmarks/fast_paths.py [--steps 4] [--threads 2]

Writes ``benchmarks/results/fast_paths.{csv,md}``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"

#: variant name -> predictor keyword arguments (the change measured against "per block")
VARIANTS = {
    "per block (I-JEPA)": {"one_pass": False},
    "one pass": {"one_pass": True},
}


def measure(predictor_args: dict, steps: int, threads: int, batch: int) -> dict:
    """Time ``steps`` SALT training steps in this process."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from usjepa.masks import MultiBlockMaskGenerator
    from usjepa.methods import SALTModule
    from usjepa.models import JEPAPredictor, ViTEncoder

    torch.set_num_threads(threads)
    vit_s = {"img_size": 224, "patch_size": 16, "embed_dim": 384, "depth": 12, "num_heads": 6}
    module = SALTModule(
        ViTEncoder(**vit_s, init_seed=0),
        JEPAPredictor(14, 384, 384, width=384, depth=6, num_heads=12, **predictor_args),
        ViTEncoder(**vit_s, init_seed=1),
    )
    module.teacher.requires_grad_(False).eval()
    masks = MultiBlockMaskGenerator(
        14, num_targets=4, context_scale=(0.85, 1.0), target_scale=(0.15, 0.2)
    )
    g = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(steps + 1):
        context, targets = masks(batch, g)
        batches.append({"image": torch.randn(batch, 1, 224, 224, generator=g),
                        "context": context, "targets": targets})  # fmt: skip
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-4)

    def step(b: dict) -> None:
        loss, _ = module.step_loss(b)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    with FlopCounterMode(display=False) as counter:
        step(batches[0])  # also the warm-up
    times = []
    for b in batches[1:]:
        start = time.perf_counter()
        step(b)
        times.append(time.perf_counter() - start)
    tokens = [int((b["targets"] >= 0).sum()) for b in batches]
    return {
        "images_per_s": batch / min(times),
        "gflop_per_image": counter.get_total_flops() / batch / 1e9,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
        "target_tokens_per_image": sum(tokens) / len(tokens) / batch,
    }


def main() -> None:
    """Run every variant in its own process and write the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--variant", default=None, help=argparse.SUPPRESS)  # child process
    args = parser.parse_args()
    if args.variant is not None:
        print(json.dumps(measure(VARIANTS[args.variant], args.steps, args.threads, args.batch)))
        return
    import pandas as pd

    rows = []
    for name in VARIANTS:
        child = [sys.executable, __file__, "--variant", name, "--steps", str(args.steps),
                 "--threads", str(args.threads), "--batch", str(args.batch)]  # fmt: skip
        result = json.loads(subprocess.check_output(child, text=True).strip().splitlines()[-1])
        rows.append({"variant": name, **result})
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(OUT / "fast_paths.csv", index=False)
    base = table.iloc[0]
    lines = [
        "# Fast paths of the SALT step, before and after",
        "",
        f"ViT-S/16 student and frozen teacher at 224 px, batch {args.batch}, predictor "
        "width 384 / depth 6 / 12 heads, 1 context block (0.85-1.0) and 4 target blocks "
        f"(0.15-0.2) on 14 x 14, AdamW, CPU, {args.threads} threads; images/s is the best "
        f"of {args.steps} timed steps, each variant in its own process. Command: "
        "`python benchmarks/fast_paths.py`.",
        "",
        "| variant | images/s | GFLOP/image | peak RSS (GB) | vs per block: speed | FLOPs "
        "| memory |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in table.itertuples():
        lines.append(
            f"| {r.variant} | {r.images_per_s:.2f} | {r.gflop_per_image:.1f} | "
            f"{r.peak_rss_gb:.2f} | {r.images_per_s / base.images_per_s:.2f}x | "
            f"{r.gflop_per_image / base.gflop_per_image:.2f}x | "
            f"{r.peak_rss_gb / base.peak_rss_gb:.2f}x |"
        )
    (OUT / "fast_paths.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
