"""Result tables in the paper's layout: rows models, columns tasks, mean +/- std cells."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from usjepa.atomic import atomic_path, write_text


def write_csv(table: pd.DataFrame, path: Path) -> None:
    """``DataFrame.to_csv`` without the index, atomically."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


def save_figure(fig: Any, path: Path, dpi: int = 120) -> None:
    """Save a matplotlib figure atomically and close it."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)


def summarise(per_seed: pd.DataFrame, metric: str = "macro_f1") -> pd.DataFrame:
    """Mean, std and seed count of ``metric`` per (model, task), in percent."""
    grouped = per_seed.groupby(["model", "task"], sort=False)[metric]
    out = grouped.agg(["mean", "std", "count"]).reset_index()
    out[["mean", "std"]] = out[["mean", "std"]] * 100.0
    return out


def paper_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Pivot to rows = models, columns = tasks, cells ``"mean +/- std"``."""
    cells = summary.assign(
        cell=summary["mean"].map("{:.1f}".format)
        + " ± "
        + summary["std"].fillna(0.0).map("{:.1f}".format)
    )
    return cells.pivot(index="model", columns="task", values="cell").reindex(
        summary["model"].unique()
    )


def write_tables(per_seed: pd.DataFrame, summary: pd.DataFrame, out_dir: Path) -> None:
    """Write per-seed and summary CSVs and a Markdown table; print the table."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(per_seed, out_dir / "probe_per_seed.csv")
    write_csv(summary, out_dir / "probe_summary.csv")
    table = paper_table(summary)
    n = int(summary["count"].max())
    md = (
        f"Linear probe, test macro F1 (%), mean ± std over {n} seeds\n\n"
        + table.to_markdown()
        + "\n"
    )
    write_text(out_dir / "probe_table.md", md)
    plot_table(summary, out_dir / "probe_table.png")
    print(md)


def plot_table(summary: pd.DataFrame, path: Path) -> None:
    """Grouped bars: one group per task, one bar per model, mean ± std macro F1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks, models = list(summary["task"].unique()), list(summary["model"].unique())
    width = 0.8 / max(1, len(models))
    fig, ax = plt.subplots(figsize=(max(4.0, 1.6 * len(tasks) + 1.2), 3.6))
    for k, model in enumerate(models):
        part = summary[summary["model"] == model].set_index("task").reindex(tasks)
        x = [i + (k - (len(models) - 1) / 2) * width for i in range(len(tasks))]
        ax.bar(x, part["mean"], width, yerr=part["std"].fillna(0), capsize=2, label=model)
    ax.set_xticks(range(len(tasks)), tasks)
    ax.set_ylabel("test macro F1 (%)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def write_tensorboard(summary: pd.DataFrame, log_dir: Path) -> None:
    """The table as TensorBoard text plus one scalar per (model, task) cell."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(log_dir))
    writer.add_text("probe/table", paper_table(summary).to_markdown())
    for row in summary.itertuples():
        writer.add_scalar(f"probe_macro_f1/{row.task}/{row.model}", row.mean)
    writer.close()


def write_few_shot(per_seed: pd.DataFrame, out_dir: Path, metric: str = "macro_f1") -> None:
    """Few-shot results: ``fewshot_per_seed.csv`` (every seed), ``fewshot.csv`` (mean,
    std per model, task and fraction), ``fewshot.md`` (rows model/task, columns label
    fraction) and ``fewshot.png`` curves."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(per_seed, out_dir / "fewshot_per_seed.csv")
    grouped = per_seed.groupby(["model", "task", "fraction"], sort=False)
    summary = grouped[metric].agg(["mean", "std", "count"]).reset_index()
    summary[["mean", "std"]] *= 100.0
    summary["train_images"] = grouped["train_images"].mean().to_numpy()
    write_csv(summary, out_dir / "fewshot.csv")
    cells = summary.assign(
        label=(summary["fraction"] * 100).map("{:g}%".format),
        cell=summary["mean"].map("{:.1f}".format)
        + " ± "
        + summary["std"].fillna(0).map("{:.1f}".format),
    )
    table = cells.pivot_table(
        index=["model", "task"], columns="label", values="cell", aggfunc="first", sort=False
    )
    table = table[[f"{f * 100:g}%" for f in sorted(summary["fraction"].unique())]]
    n = int(summary["count"].max())
    sizes = summary.groupby(["task", "fraction"])["train_images"].mean()
    counts = "; ".join(
        f"{task}: " + ", ".join(f"{f * 100:g}% {images:.0f}" for f, images in part.items())
        for task, part in sizes.groupby(level=0, sort=False)
        for part in [part.droplevel(0)]
    )
    write_text(
        out_dir / "fewshot.md",
        f"Few-shot linear probe, test macro F1 (%), mean ± std over {n} seeds, by the share "
        "of training patients labeled\n\n"
        + table.reset_index().to_markdown(index=False)
        + f"\n\nLabeled training images (mean over seeds): {counts}.\n",
    )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(summary["task"].unique())
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.8), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for model, rows in summary[summary["task"] == task].groupby("model", sort=False):
            x = rows["fraction"] * 100
            ax.errorbar(
                x, rows["mean"], yerr=rows["std"].fillna(0), marker="o", capsize=3, label=model
            )
        ax.set_xscale("log")
        ax.set_xlabel("labeled training patients (%)")
        ax.set_ylabel(f"test {metric.replace('_', ' ')} (%)")
        ax.set_title(task)
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out_dir / "fewshot.png", dpi=120)
