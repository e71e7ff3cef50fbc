"""How much context and target each image keeps: I-JEPA's batch cut against per-image padding.

Draws multi-block masks over a mixed corpus of real and synthetic frames (convex, linear
and phased probes) in batches of 32, in four settings (14x14 grid with 4 targets, plain
and USrc; the 8x8 demo grid with 2 targets, USrc; SALT's stage-1 masks, the union of the
4 targets as one set, USrc), twice:

- ``before``: the I-JEPA stacking this project used until now, sets cut to the batch's
  shortest (``truncate=True``), block sizes fractions of the whole grid
  (``region_relative=False``), targets placed where half their patches are in the region;
- ``after``: today's defaults, each image's own draw padded with ``-1``, USrc block sizes
  relative to the image's scan region, targets placed where 3/4 of them are inside.

An image's "own draw" is its set before stacking (the same seed with ``truncate=False``
gives the very same blocks). It also times a ViT-S/16 student + predictor step on the
padded and on the cut masks, side by side, so the padding's cost is a measured ratio.

Real frames come from a corpus folder built by ``usjepa data build`` (its manifest and
scan masks); the README says how to rebuild the one recorded. Writes
``benchmarks/results/data/mask_context/mask_context.{md,csv}``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from benchmarks.common import record_env, results_dir
from usjepa.data.synthetic import draw_patient, render_frame
from usjepa.data.synthetic.geometry import GEOMETRY_KINDS
from usjepa.masks import MultiBlockMaskGenerator
from usjepa.models import JEPAPredictor, ViTEncoder

ROOT = Path(__file__).resolve().parents[2]
BATCH = 32
SETTINGS = [  # (name, grid, targets, usrc, extra generator arguments)
    ("14x14, 4 targets, plain", 14, 4, False, {}),
    ("14x14, 4 targets, USrc", 14, 4, True, {}),
    ("8x8, 2 targets (demo), USrc", 8, 2, True, {}),
    ("stage 1: 14x14, union of 4 targets, USrc", 14, 4, True, {"union_targets": True}),
]
VARIANTS = {
    "before": dict(truncate=True, region_relative=False, min_valid_fraction=0.5),
    "after": dict(),
}


def synthetic_masks(n: int, size: int = 256) -> list[np.ndarray]:
    """Ground-truth scan masks of ``n`` synthetic frames, probe kinds in turn."""
    out = []
    for i in range(n):
        kind = GEOMETRY_KINDS[i % len(GEOMETRY_KINDS)]
        rng = np.random.default_rng([2026, i])
        _, truth = render_frame(draw_patient(size, rng, kind), i % 6, rng)
        out.append(truth > 0)
    return out


def real_masks(corpus: Path, n: int, seed: int = 0) -> tuple[list[np.ndarray], list[str]]:
    """Scan masks of ``n`` frames of a built corpus, at most 8 per source clip."""
    manifest = pd.read_parquet(corpus / "manifest.parquet")
    rows = manifest.groupby("source_path").head(8).sample(frac=1.0, random_state=seed)
    rows = rows.head(n)
    masks = [cv2.imread(str(corpus / p), cv2.IMREAD_GRAYSCALE) > 0 for p in rows.scan_mask]
    # the set, and for POCUS its probe (its folders are named after it)
    kinds = [
        f"{d} {p.split('/')[1]}" if d == "POCUS" and p.count("/") >= 2 else str(d)
        for d, p in zip(rows.dataset, rows.source_path)
    ]
    return masks, kinds


def patch_valid(masks: list[np.ndarray], grid: int, threshold: float = 0.5) -> torch.Tensor:
    """``[N, G, G]`` patches whose area is at least ``threshold`` scan region."""
    stack = [torch.from_numpy(cv2.resize(m.astype(np.uint8), (224, 224))) for m in masks]
    cover = F.adaptive_avg_pool2d(torch.stack(stack)[:, None].float(), grid)[:, 0]
    return cover >= threshold


def draw(
    gen: MultiBlockMaskGenerator, valid: torch.Tensor | None, n: int, seed: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    out = []
    for start in range(0, n, BATCH):
        v = None if valid is None else valid[start : start + BATCH]
        b = BATCH if v is None else len(v)
        out.append(gen(b, torch.Generator().manual_seed(seed + start), v))
    return out


def counts(batches: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[np.ndarray, np.ndarray]:
    """Per image context count ``[N]`` and per block target count ``[N, M]`` (no padding)."""
    ctx = torch.cat([(c >= 0).sum(1) for c, _ in batches]).numpy()
    tgt = torch.cat([(t >= 0).sum(2) for _, t in batches]).numpy()
    return ctx, tgt


def measure(
    valid_all: torch.Tensor, grid: int, targets: int, usrc: bool, variant: str, extra: dict
) -> dict:
    n = len(valid_all)
    gen = MultiBlockMaskGenerator(grid, num_targets=targets, **VARIANTS[variant], **extra)
    valid = valid_all if usrc else None
    stacked = draw(gen, valid, n, seed=7)
    own_gen = MultiBlockMaskGenerator(
        grid, num_targets=targets, **{**VARIANTS[variant], "truncate": False}, **extra
    )
    own = draw(own_gen, valid, n, seed=7)
    ctx_kept, tgt_kept = counts(stacked)
    ctx_own, tgt_own = counts(own)
    region = valid_all.flatten(1).sum(1).numpy() if usrc else np.full(n, grid * grid)
    share = ctx_kept / region
    padded_ctx = sum(c.numel() for c, _ in stacked)
    padded_tgt = sum(t.numel() for _, t in stacked)
    return {
        "setting": None,
        "variant": variant,
        "context own (median)": float(np.median(ctx_own)),
        "context own (p5)": float(np.percentile(ctx_own, 5)),
        "context in batch (median)": float(np.median(ctx_kept)),
        "target/block own (median)": float(np.median(tgt_own)),
        "target/block in batch (median)": float(np.median(tgt_kept)),
        "kept/own context (p5)": float(np.percentile(ctx_kept / np.maximum(ctx_own, 1), 5)),
        "kept/own targets (p5)": float(np.percentile(tgt_kept / np.maximum(tgt_own, 1), 5)),
        "context/region (median)": float(np.median(share)),
        "context/region (p5)": float(np.percentile(share, 5)),
        "padding share, context slots": 1 - ctx_kept.sum() / padded_ctx,
        "padding share, target slots": 1 - tgt_kept.sum() / padded_tgt,
    }


def step_time(batches: list[tuple[torch.Tensor, torch.Tensor]], repeats: int) -> float:
    """CPU seconds per ViT-S/16 student + predictor forward and backward at 224 px, on one
    thread (CPU time of this process, so other load on the machine does not count)."""
    torch.manual_seed(0)
    student = ViTEncoder(224, 16, 1, 384, 12, 6, init_seed=0)
    predictor = JEPAPredictor(14, 384, 384, width=384, depth=6, num_heads=12)
    images = torch.randn(BATCH, 1, 224, 224)
    times = []
    for i in range(repeats + 1):
        context, targets = batches[i % len(batches)]
        start = time.process_time()
        tokens = student(images[: len(context)], keep=context)[:, 1:]
        pred = predictor(tokens, context, targets)
        pred[targets >= 0].square().mean().backward()
        if i:  # the first step warms up
            times.append(time.process_time() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, required=True, help="built corpus of real frames")
    parser.add_argument("--real", type=int, default=256)
    parser.add_argument("--synthetic", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=4, help="timed steps per variant")
    parser.add_argument("--out", type=Path, default=results_dir(__file__))
    ns = parser.parse_args()
    torch.set_num_threads(1)
    real, real_kinds = real_masks(ns.corpus, ns.real)
    masks = real + synthetic_masks(ns.synthetic)
    order = np.random.default_rng(0).permutation(len(masks))  # real and synthetic mixed
    masks = [masks[i] for i in order]
    rows = []
    for name, grid, targets, usrc, extra in SETTINGS:
        valid = patch_valid(masks, grid)
        for variant in VARIANTS:
            row = measure(valid, grid, targets, usrc, variant, extra)
            row["setting"] = name
            rows.append(row)
            print(name, variant, {k: round(v, 3) for k, v in row.items() if k[0] in "ckp"})
    valid = patch_valid(masks, 14)
    timing = {}
    for variant in VARIANTS:
        gen = MultiBlockMaskGenerator(14, num_targets=4, **VARIANTS[variant])
        timing[variant] = step_time(draw(gen, valid, len(masks), seed=7), ns.repeats)
    # the same padded shapes with no slot marked as padding: isolates the attention mask
    gen = MultiBlockMaskGenerator(14, num_targets=4)
    unmasked = [(c.clamp(min=0), t.clamp(min=0)) for c, t in draw(gen, valid, len(masks), 7)]
    timing["unmasked"] = step_time(unmasked, ns.repeats)
    table = pd.DataFrame(rows)
    ns.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(ns.out / "mask_context.csv", index=False)
    kinds = pd.Series(real_kinds).value_counts().to_dict()
    lines = [
        "# Context and targets kept per image: batch cut (before) against padding (after)",
        "",
        f"Frames: {len(real)} real (by set and, for POCUS, probe: {kinds}) and "
        f"{ns.synthetic} synthetic (convex, linear, phased), shuffled together, in batches "
        f"of {BATCH}. Valid patches: at least half the patch inside the scan mask. "
        "Command: `python -m benchmarks.data.mask_context --corpus <built corpus>`.",
        "",
        table.round(3).to_markdown(index=False),
        "",
        "Cost of padding, USrc 14x14 with 4 targets, ViT-S/16 student + predictor (width "
        f"384, depth 6) forward and backward on {BATCH} images at 224 px, one thread, CPU "
        f"seconds, median of {ns.repeats} steps: before (cut) {timing['before']:.2f} s, "
        f"after (padded) "
        f"{timing['after']:.2f} s, ratio {timing['after'] / timing['before']:.2f}. The "
        "padded step computes every image's own context instead of the batch's shortest, "
        "which the cut threw away. The same padded shapes with no slot marked as padding "
        f"(no attention mask) take {timing['unmasked']:.2f} s: the mask itself costs "
        f"{timing['after'] / timing['unmasked']:.2f}x, and the padded slots (the share in "
        "the table) are the rest of the overhead over an ideal unpadded step.",
    ]
    record_env(ns.out / "mask_context.md")
    (ns.out / "mask_context.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
