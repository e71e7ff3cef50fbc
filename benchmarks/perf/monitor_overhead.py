"""The cost of the training monitors: SALT steps at the demo's size with and without
``CollapseMonitor``, ``ThroughputMonitor`` and ``MaskImages`` at their recipe cadence
(every 50, 50 and 500 steps), runs alternating, best of each side.

Batches are fixed random tensors (64 px, 8x8 grid, batch 64, the demo's multi-block
masks) so that only the step and the monitors are timed, with a TensorBoard logger in
both arms. Writes ``results/perf/monitor_overhead/monitor_overhead.{md,csv}``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader, Dataset

from benchmarks.common import record_env, results_dir
from usjepa.callbacks import CollapseMonitor, MaskImages, ThroughputMonitor
from usjepa.callbacks.collapse import indicators, step_outputs
from usjepa.callbacks.monitors import overlay_masks
from usjepa.callbacks.online_probe import knn_scores
from usjepa.masks import MaskedBatch, MultiBlockMaskGenerator
from usjepa.methods import SALTModule
from usjepa.models import JEPAPredictor, ViTEncoder

ROOT = Path(__file__).resolve().parents[2]
ARCH = {"img_size": 64, "patch_size": 8, "embed_dim": 192, "depth": 6, "num_heads": 3}


class Batches(Dataset):
    """``n`` fixed demo-sized batches with multi-block masks."""

    def __init__(self, n: int) -> None:
        g = torch.Generator().manual_seed(0)
        masks = MultiBlockMaskGenerator(8, num_targets=2, context_scale=(0.85, 1.0))
        self.items = []
        for _ in range(n):
            context, targets = masks(64, g)
            image = torch.randn(64, 1, 64, 64, generator=g)
            self.items.append({"image": image, "context": context, "targets": targets})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def seconds(steps: int, monitors: bool, work: Path) -> float:
    """Wall time of ``steps`` SALT steps (after 5 warm-up steps are excluded)."""
    torch.manual_seed(0)
    module = SALTModule(
        ViTEncoder(**ARCH, init_seed=2),
        JEPAPredictor(8, 192, 192, width=96, depth=2, num_heads=4),
        ViTEncoder(**ARCH, init_seed=1),
    )
    callbacks: list[L.Callback] = []
    if monitors:
        callbacks = [CollapseMonitor(50), ThroughputMonitor(50), MaskImages(500)]

    class Clock(L.Callback):
        start = 0.0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
            if trainer.global_step == 5:
                Clock.start = time.perf_counter()

    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=steps + 5,
        logger=TensorBoardLogger(work, name="monitors" if monitors else "plain"),
        log_every_n_steps=10,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        callbacks=[*callbacks, Clock()],
    )
    trainer.fit(module, DataLoader(Batches(steps + 5), batch_size=None))
    return time.perf_counter() - Clock.start


def median_seconds(fn, repeats: int) -> float:  # noqa: ANN001
    """Median wall time of ``fn()`` over ``repeats`` calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def accounted() -> dict[str, float]:
    """Each monitor's own work, timed alone on the demo's sizes: the collapse indicators
    of one step's kept outputs, one mask grid, one online kNN probe of 256 images."""
    torch.manual_seed(0)
    module = SALTModule(
        ViTEncoder(**ARCH, init_seed=2),
        JEPAPredictor(8, 192, 192, width=96, depth=2, num_heads=4),
        ViTEncoder(**ARCH, init_seed=1),
    )
    batch = Batches(1)[0]
    kept = step_outputs(module.step(MaskedBatch.of(batch))[2])
    images = torch.randn(256, 1, 64, 64)
    labels = torch.arange(256) % 6

    def probe() -> None:
        with torch.no_grad():
            feats = torch.cat(
                [module.student(images[i : i + 64])[:, 1:].mean(1) for i in range(0, 256, 64)]
            )
        knn_scores(torch.nn.functional.normalize(feats, dim=-1), labels, 6)

    return {
        "indicators": median_seconds(lambda: indicators(kept), 10),
        "mask_grid": median_seconds(
            lambda: overlay_masks(batch["image"], batch["context"], batch["targets"], 8), 10
        ),
        "knn_probe": median_seconds(probe, 3),
        "kept_rows": float(len(kept["student"]) + len(kept["predictions"]) + len(kept["targets"])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(results_dir(__file__) / "monitor_overhead"))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for monitors in (False, True):
                s = seconds(args.steps, monitors, Path(tmp))
                rows.append({"repeat": repeat, "monitors": monitors, "seconds": s})
                print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    best = table.groupby("monitors")["seconds"].min()
    ratio = best[True] / best[False]
    spread = table.groupby("monitors")["seconds"].agg(lambda x: x.max() / x.min() - 1).max()
    alone = accounted()
    step = best[False] / args.steps
    shares = {
        "collapse indicators, every 50 steps": alone["indicators"] / (50 * step),
        "mask grid, every 500 steps": alone["mask_grid"] / (500 * step),
        "online kNN probe (256 images), every 200 steps": alone["knn_probe"] / (200 * step),
    }
    out = Path(args.out)
    table.to_csv(out.with_suffix(".csv"), index=False)
    lines = [
        "# Cost of the training monitors",
        "",
        f"{args.steps} SALT steps at the demo's size (ViT 6 x 192 at 64 px, batch 64) on "
        f"CPU, {torch.get_num_threads()} threads, with a TensorBoard logger in both arms; "
        f"{args.repeats} runs each, alternating, best of each side.",
        "",
        "| arm | seconds | per step (ms) |",
        "|---|---|---|",
        f"| no monitors | {best[False]:.2f} | {1000 * best[False] / args.steps:.1f} |",
        f"| CollapseMonitor(50) + ThroughputMonitor(50) + MaskImages(500) | {best[True]:.2f} "
        f"| {1000 * best[True] / args.steps:.1f} |",
        "",
        f"Overhead measured side by side: {100 * (ratio - 1):+.1f} % of step time (bar: "
        f"under 3 %); the runs of one arm spread by up to {100 * spread:.0f} %, so the "
        "difference is noise at this size.",
        "",
        "Each monitor's own work, timed alone (median), and its share of a step at its "
        f"cadence (a step: {1000 * step:.0f} ms, the no-monitor arm's best):",
        "",
        "| work | ms per call | share of step time |",
        "|---|---|---|",
        f"| collapse indicators ({alone['kept_rows']:.0f} kept rows of 192: student, "
        f"predictions, targets) | {1000 * alone['indicators']:.1f} "
        f"| {100 * shares['collapse indicators, every 50 steps']:.2f} % |",
        f"| mask grid | {1000 * alone['mask_grid']:.1f} "
        f"| {100 * shares['mask grid, every 500 steps']:.3f} % |",
        f"| online kNN probe (256 images) | {1000 * alone['knn_probe']:.0f} "
        f"| {100 * shares['online kNN probe (256 images), every 200 steps']:.2f} % |",
        "",
        f"Accounted together: {100 * sum(shares.values()):.2f} % of step time; the "
        "throughput clock adds two `perf_counter` calls a step.",
    ]
    record_env(out.with_suffix(".md"))
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
