"""The monitors of a demo SALT run, read back from its TensorBoard logs, and whether
``CollapseMonitor``'s default thresholds would warn at any reading.

    make pretrain                                  # the demo: teacher, then SALT student
    python -m benchmarks.quality.demo_monitors runs/demo/salt/version_0

Writes ``results/quality/demo_monitors/demo_monitors.{csv,md}``; ``docs/tensorboard_screenshot.py``
draws the same logs in TensorBoard.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from benchmarks.common import record_env, results_dir
from usjepa.callbacks import CollapseMonitor

ROOT = Path(__file__).resolve().parents[2]
OUT = results_dir(__file__)


def read_monitors(run: Path) -> pd.DataFrame:
    """``monitor/*`` scalars as one row per step (columns without the prefix)."""
    events = EventAccumulator(str(run), size_guidance={"scalars": 0})
    events.Reload()
    columns = {}
    for tag in events.Tags()["scalars"]:
        if tag.startswith("monitor/"):
            columns[tag.removeprefix("monitor/")] = {e.step: e.value for e in events.Scalars(tag)}
    return pd.DataFrame(columns).sort_index().rename_axis("step")


def would_warn(row: pd.Series, width: int, monitor: CollapseMonitor) -> list[str]:
    """The indicators of one reading under their floors (CollapseMonitor's own rule)."""
    values = {name: float(v) for name, v in row.items() if not pd.isna(v)}
    floors = monitor.below_floor(values, dict.fromkeys(("student", "predictor", "target"), width))
    return [name for name, low in floors.items() if low]


def main() -> None:
    """Tabulate a run's monitors and check the warning thresholds against them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a version folder with the run's events file")
    parser.add_argument("--width", type=int, default=192, help="the student's width")
    args = parser.parse_args()
    table = read_monitors(Path(args.run))
    monitor = CollapseMonitor()
    table["would_warn"] = [
        ", ".join(would_warn(row, args.width, monitor)) if step >= monitor.warmup_steps else ""
        for step, row in table.iterrows()
    ]
    table.round(4).to_csv(OUT / "demo_monitors.csv")
    collapse = [c for c in table.columns if "rankme" in c or c.endswith("_std")]
    shown = table[[*collapse, "pred_target_cosine", "would_warn"]].dropna(subset=collapse)
    warned = (shown["would_warn"] != "").sum()
    text = "\n".join(
        [
            "# Monitors of the demo SALT run",
            "",
            f"Read from `{Path(*Path(args.run).parts[-4:])}` (the demo's stage 2, "
            "`make pretrain`, 2 CPU cores) by "
            "`python -m benchmarks.quality.demo_monitors`. Effective ranks (RankMe) of the "
            f"student's context tokens, the predictions and the targets, of width "
            f"{args.width}; per-dimension stds of the L2-normalised tokens (an even spread "
            f"gives {1 / args.width**0.5:.3f}); prediction-target cosine. `would_warn` applies "
            "CollapseMonitor's defaults (from step "
            f"{monitor.warmup_steps}: a rank under {monitor.min_rank_fraction:g} of the "
            f"width, or the student's or predictor's under {monitor.min_rank_vs_targets:g} "
            f"of the targets'; a std under {monitor.min_std:g} of an even spread's): "
            f"{warned} of {len(shown)} readings.",
            "",
            shown.round(3).to_markdown(),
            "",
            "kNN probe on the synthetic task (leave-one-out, macro F1): "
            + ", ".join(
                f"step {step}: {value:.3f}"
                for step, value in table["knn_macro_f1"].dropna().items()
            )
            + ". Throughput (images/s): "
            + ", ".join(f"{value:.0f}" for value in table["images_per_s"].dropna().to_numpy())
            + ".",
            "",
        ]
    )
    record_env(OUT / "demo_monitors.md")
    (OUT / "demo_monitors.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
