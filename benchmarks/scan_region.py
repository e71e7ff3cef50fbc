"""Scan-region detection: IoU against the synthetic generator's ground truth, and speed.

For each probe geometry (convex, linear, phased) renders ``--frames`` frames at 256 px
with all overlays (text, ruler, grey bar, ECG, calipers) and every lesion class,
detects the scan region with :func:`usjepa.data.scan_region.detect_scan_region` and
scores IoU against the analytic mask. Speed is frames per second on one core (OpenCV
and torch limited to one thread), measured in the same run as a plain threshold + convex
hull baseline, so the ratio is robust to machine load. Writes
``benchmarks/results/scan_region.{md,csv}``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch

from usjepa.data.scan_region import detect_scan_region, iou
from usjepa.data.synthetic import draw_patient, render_frame
from usjepa.data.synthetic.geometry import GEOMETRY_KINDS

ROOT = Path(__file__).resolve().parents[1]


def baseline(frame: np.ndarray) -> np.ndarray:
    """Plain threshold + convex hull of all bright pixels (the reference in the issue)."""
    mask = np.zeros_like(frame)
    points = cv2.findNonZero((frame > 8).astype(np.uint8))
    if points is not None:
        cv2.fillConvexPoly(mask, cv2.convexHull(points), 255)
    return mask


def frames_per_second(fn, frames: list[np.ndarray], repeats: int = 5) -> float:
    start = time.process_time()  # CPU time of this one thread: per-core throughput
    for _ in range(repeats):
        for f in frames:
            fn(f)
    return repeats * len(frames) / (time.process_time() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=200, help="frames per geometry")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results"))
    ns = parser.parse_args()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    rows, frames = [], []
    for kind in GEOMETRY_KINDS:
        for i in range(ns.frames):
            rng = np.random.default_rng([2026, i, len(kind)])
            image, truth = render_frame(draw_patient(ns.size, rng, kind), i % 6, rng)
            frames.append(image)
            rows.append(
                {
                    "geometry": kind,
                    "frame": i,
                    "iou": iou(detect_scan_region(image), truth),
                    "iou_baseline": iou(baseline(image), truth),
                }
            )
    table = pd.DataFrame(rows)
    fps = frames_per_second(detect_scan_region, frames[:150])
    fps_base = frames_per_second(baseline, frames[:150])
    out = Path(ns.out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "scan_region.csv", index=False)
    summary = table.groupby("geometry")[["iou", "iou_baseline"]].agg(["mean", "min"])
    lines = [
        f"Scan-region detection on {ns.frames} synthetic {ns.size}-px frames per geometry "
        "(all overlays, all lesion classes).",
        "",
        "| geometry | mean IoU | min IoU | baseline mean IoU | baseline min IoU |",
        "|---|---|---|---|---|",
    ]
    for kind, r in summary.iterrows():
        lines.append(
            f"| {kind} | {r[('iou', 'mean')]:.4f} | {r[('iou', 'min')]:.4f} | "
            f"{r[('iou_baseline', 'mean')]:.4f} | {r[('iou_baseline', 'min')]:.4f} |"
        )
    lines += [
        "",
        f"Overall mean IoU: {table['iou'].mean():.4f} "
        f"(baseline {table['iou_baseline'].mean():.4f}).",
        "",
        f"Speed, one core, same run: {fps:.0f} frames/s; threshold + hull baseline "
        f"{fps_base:.0f} frames/s (ratio {fps / fps_base:.2f}).",
    ]
    (out / "scan_region.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
