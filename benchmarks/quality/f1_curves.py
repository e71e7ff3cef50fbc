"""Probe macro F1 against pretraining minutes: probing the snapshots, the Markdown table
and the plot, shared by ``probe_vs_minutes.py`` (synthetic data) and
``real_reproduction.py`` (real scans)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]


def usjepa_command(command: str, config: str | Path) -> list[str]:
    """``python -m usjepa <command> --config <config>``, with this interpreter."""
    return [sys.executable, "-m", "usjepa", command, "--config", str(config)]


def probe_snapshots(encoders: dict, seeds: str, out: Path, task: dict | None = None) -> None:
    """``usjepa probe`` of the snapshot ``encoders`` (YAML specs by name) under the demo
    protocol, on ``task`` (the demo's synthetic task by default), into ``out``."""
    command = usjepa_command("probe", ROOT / "experiments/probe/demo.yaml")
    if task is not None:
        command += ["--task", json.dumps(task)]
    command += ["--encoders", json.dumps(encoders), "--protocol.seeds", seeds]
    subprocess.run([*command, "--out_dir", str(out)], check=True, cwd=ROOT)


def table_lines(summary: pd.DataFrame, columns: list[str], random_f1: float) -> list[str]:
    """Table rows: the given label ``columns``, then minutes, F1, std and the gap to
    random init (``summary`` has ``minutes``, ``mean`` and ``std``)."""
    lines = [
        "| " + " | ".join([*columns, "minutes", "macro F1", "std", "vs random"]) + " |",
        "|" + "---|" * (len(columns) + 4),
    ]
    for _, r in summary.iterrows():
        labels = [str(r[c]) for c in columns]
        lines.append(
            "| " + " | ".join(labels) + f" | {r['minutes']:.1f} | {r['mean']:.1f} | "
            f"{r['std']:.1f} | {r['mean'] - random_f1:+.1f} |"
        )
    return lines


def plot_curves(
    curves: list[tuple[pd.DataFrame, dict]],
    random_f1: tuple[float, float | None],
    xlabel: str,
    ylabel: str,
    path: Path,
    size: tuple[float, float] = (6, 4),
    legend_outside: bool = False,
) -> None:
    """One error-bar curve per ``(rows, matplotlib style)``, random init as a grey line
    (with its std band when given), saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size)
    for rows, style in curves:
        style = {"marker": "o", "capsize": 3, **style}
        ax.errorbar(rows["minutes"], rows["mean"], yerr=rows["std"], **style)
    mean, std = random_f1
    ax.axhline(mean, color="grey", ls=":" if std is not None else "--", label="random init")
    if std is not None:
        ax.axhspan(mean - std, mean + std, color="grey", alpha=0.15)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if legend_outside:  # many curves: the legend beside the axes, not over the data
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
