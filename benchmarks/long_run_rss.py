"""Resident memory over a longer CPU run: how far it creeps past the first steps, and
what ``usjepa.callbacks.ReleaseHostMemory`` (glibc's ``malloc_trim``) buys back.

``peer_step.py`` and ``heap.py`` read the peak RSS over 12 steps. Every step draws new
masks, so its token counts, and the sizes of its tensors, differ from the last; glibc
keeps the freed blocks and the heap's span grows for many steps. This script runs the
SALT step of ``peer_step.py`` (ViT-S/16, batch 16, 2 threads, our one-pass step with the
bf16 teacher and selective checkpointing, stable-pretraining's fp32 step) for
``--steps`` steps, each row in its own process importing only its own library, and
records the RSS after every step and the peak RSS of the whole run. Rows: each library
under the default allocator and under ``THP_MEM_ALLOC_ENABLE=1`` (which ``python -m
usjepa`` sets), ours with the trim after every 10th step and after every step, and ours
with its linear layers in oneDNN (``USJEPA_CPU_MATMUL=onednn``) under THP, untrimmed and
trimmed after every 10th step and after every step, and untrimmed with glibc's mmap
threshold fixed at 8 MB (``MALLOC_MMAP_THRESHOLD_``). ``--repeats`` interleaved rounds
over the rows; every ratio is taken within a round, then its median and range over
rounds. ``--rows`` (a regular expression) runs a subset, always with the peer's default
row, and ``--out`` names its files.

    .venv-bench/bin/python benchmarks/long_run_rss.py [--steps 48] [--repeats 3]
        [--rows REGEX --out STEM]

Writes ``benchmarks/results/long_run_rss.{csv,md,png}`` (the PNG: RSS after each step of
the first round), ``long_run_rss_runs.csv`` (every run) and ``long_run_rss_steps.csv``
(every step of every run); ``--out`` replaces ``long_run_rss`` in those names.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from common import GB, in_child, peak_rss_gb, rss_gb

OUT = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
OURS = "usjepa SALT, one pass, bf16 teacher, selective checkpointing"
OURS_ONEDNN = OURS + ", oneDNN matmuls"
PEER = "stable-pretraining SALT"
PEER_DEFAULT = "stable-pretraining, default allocator"
THP = {"THP_MEM_ALLOC_ENABLE": "1"}
#: label -> (peer_step row, environment, trim every n steps or 0)
ROWS: dict[str, tuple[str, dict[str, str], int]] = {
    "usjepa, default allocator": (OURS, {}, 0),
    "usjepa, THP": (OURS, THP, 0),
    "usjepa, THP, trim every 10 steps": (OURS, THP, 10),
    "usjepa, THP, trim every step": (OURS, THP, 1),
    "usjepa, oneDNN matmuls, THP": (OURS_ONEDNN, THP, 0),
    "usjepa, oneDNN matmuls, THP, trim every 10 steps": (OURS_ONEDNN, THP, 10),
    "usjepa, oneDNN matmuls, THP, trim every step": (OURS_ONEDNN, THP, 1),
    # glibc serves blocks of 8 MB and more (the predictor's MLP activations and their
    # gradients) from mmap, handed back to the kernel as soon as they are freed
    "usjepa, oneDNN matmuls, THP, mmap threshold 8 MB": (
        OURS_ONEDNN,
        {**THP, "MALLOC_MMAP_THRESHOLD_": str(8 << 20)},
        0,
    ),
    "stable-pretraining, default allocator": (PEER, {}, 0),
    "stable-pretraining, THP": (PEER, THP, 0),
}
WARMUP = 4


def child(label: str, steps: int) -> dict[str, Any]:
    """Run ``label``'s row for ``steps`` steps in this process."""
    import peer_step

    row, _, every = ROWS[label]
    _, builder, opts = peer_step.ROWS[row]
    import importlib

    importlib.import_module(peer_step.LIBRARIES[builder])
    import torch

    peer_step.select_matmul(builder, opts)

    torch.set_num_threads(2)
    chans = 3 if builder.startswith("peer") else 1
    masks = peer_step.draw_masks(steps, 16)
    g = torch.Generator().manual_seed(1)
    images = [torch.randn(16, chans, 224, 224, generator=g) for _ in range(4)]
    torch.manual_seed(0)
    model, loss_fn = getattr(peer_step, builder)(opts)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    release = None
    if every:  # the callback's own hook, as a Trainer would call it after each batch
        from usjepa.callbacks import ReleaseHostMemory

        release = ReleaseHostMemory(every)
    times, after = [], []
    for i in range(steps):
        start = time.perf_counter()
        loss_fn(images[i % 4], *masks[i]).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if release is not None:
            release.on_train_batch_end(None, model, None, None, i)  # type: ignore[arg-type]
        times.append(time.perf_counter() - start)
        after.append(rss_gb())
    return {
        "images_per_s": 16 / statistics.median(times[WARMUP:]),
        "peak_rss_gb": peak_rss_gb(),
        "rss_after_steps_gb": after,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds over the rows")
    parser.add_argument(
        "--rows", default=None, help="a regular expression: run only the rows it matches "
        "(the peer's default row always runs; it is what every ratio is taken against)",
    )  # fmt: skip
    parser.add_argument(
        "--out", default="long_run_rss", help="stem of the files written under results/"
    )
    parser.add_argument(
        "--from-runs", default=None, help="a runs CSV this script wrote (with its steps CSV "
        "beside it): rebuild the tables and plot from it, measuring nothing",
    )  # fmt: skip
    parser.add_argument("--label", default=None, help=argparse.SUPPRESS)  # child process
    args = parser.parse_args()
    if args.label is not None:
        print(json.dumps(child(args.label, args.steps)))
        return
    try:
        import stable_pretraining  # noqa: F401
    except ImportError as err:
        sys.exit(f"long_run_rss: {err.name} is not installed; run `make bench-peers`")
    import pandas as pd

    quarter = max(1, args.steps // 4)
    labels = [
        label for label in ROWS
        if args.rows is None or label == PEER_DEFAULT or re.search(args.rows, label)
    ]  # fmt: skip
    runs, steps = [], []
    if args.from_runs:  # recorded runs: same tables, nothing measured
        recorded = pd.read_csv(args.from_runs)
        runs = recorded.to_dict("records")
        steps = pd.read_csv(args.from_runs.replace("_runs.csv", "_steps.csv")).to_dict("records")
        args.repeats = int(recorded["round"].max()) + 1
        args.steps = int(max(r["step"] for r in steps))
        quarter = max(1, args.steps // 4)
    # interleaved rounds: drift of the machine hits every row
    for round_ in range(0 if args.from_runs else args.repeats):
        for label in labels:
            env = ROWS[label][1]
            figures = in_child(__file__, env=env, label=label, steps=args.steps)
            after = figures.pop("rss_after_steps_gb")
            steps += [
                {"row": label, "round": round_, "step": i + 1, "rss_gb": v}
                for i, v in enumerate(after)
            ]
            runs.append(
                {
                    "row": label,
                    "round": round_,
                    **figures,
                    f"rss_after_step_{quarter}_gb": after[quarter - 1],
                    "rss_after_last_step_gb": after[-1],
                    "max_rss_after_a_step_gb": max(after),
                }
            )
            print(runs[-1], flush=True)
    frame, per_step = pd.DataFrame(runs), pd.DataFrame(steps)
    table = ratios(frame)
    frame.to_csv(OUT / f"{args.out}_runs.csv", index=False)
    table.to_csv(OUT / f"{args.out}.csv", index=False)
    per_step.to_csv(OUT / f"{args.out}_steps.csv", index=False)
    plot(per_step, OUT / f"{args.out}.png")
    flags = "" if args.rows is None else f" --rows '{args.rows}' --out {args.out}"
    write_markdown(table, args.steps, args.repeats, quarter, args.out, flags)


def untrimmed(label: str) -> str:
    """The row ``label`` changes by trimming the heap or moving glibc's mmap threshold
    (``label`` itself where it does neither)."""
    return re.sub(r", (trim every .*|mmap threshold .*)$", "", label)


def ratios(frame: Any) -> Any:
    """One row per label: medians over the rounds, and each ratio taken within a round
    (against the peer's default run, or the same row untrimmed, of that round), its median
    and range over the rounds."""
    import pandas as pd

    peer = frame[frame.row == PEER_DEFAULT].set_index("round")
    rows = []
    for label, runs in frame.groupby("row", sort=False):
        runs = runs.set_index("round")
        own = frame[frame.row == untrimmed(label)].set_index("round")
        within = {
            "speed_vs_own_untrimmed": runs.images_per_s / own.images_per_s,
            "speed_vs_peer_default": runs.images_per_s / peer.images_per_s,
            "peak_rss_vs_peer_default": runs.peak_rss_gb / peer.peak_rss_gb,
        }
        row = {"row": label, "rounds": len(runs)}
        row.update(runs.drop(columns="row").median(numeric_only=True).to_dict())
        for name, values in [("images_per_s", runs.images_per_s), ("peak_rss_gb", runs.peak_rss_gb),
                             *within.items()]:  # fmt: skip
            row[name] = values.median()
            row[f"{name}_min"], row[f"{name}_max"] = values.min(), values.max()
        rows.append(row)
    return pd.DataFrame(rows)


def write_markdown(
    table: Any, steps: int, repeats: int, quarter: int, out: str = "long_run_rss", command: str = ""
) -> None:
    """``{out}.md`` from the per-label table of :func:`ratios`; ``command``: the flags the
    script ran with, for the command line the file quotes."""

    def spread(r: Any, name: str, unit: str = "") -> str:
        low, high = r[f"{name}_min"], r[f"{name}_max"]
        return f"{r[name]:.2f}{unit} ({low:.2f}-{high:.2f}{unit})"

    lines = [
        "# Resident memory over a longer CPU run",
        "",
        f"The SALT step of `peer_step.py` (ViT-S/16, batch 16, 2 threads; ours one-pass "
        f"with the bf16 teacher and selective checkpointing, stable-pretraining's fp32), "
        f"{steps} steps with a new mask draw each, each row in its own process "
        f"importing only its own library; {repeats} interleaved rounds over the rows, each "
        "figure the median of the rounds with its range over them in brackets; every ratio "
        "is taken within a round (ours against the peer's run of the same round) before the "
        "median. Peak RSS: the whole run's "
        "(`VmHWM`); RSS after a step: sampled once the step's update is done. THP: "
        "`THP_MEM_ALLOC_ENABLE=1` (set by `python -m usjepa`). Trim: "
        "`usjepa.callbacks.ReleaseHostMemory` (glibc's `malloc_trim(0)`; every 10 steps is "
        "its default). oneDNN matmuls: "
        "`USJEPA_CPU_MATMUL=onednn` (`usjepa.models.cpu_matmul`); the other rows of ours "
        "run torch's BLAS, as the peer does. Speed vs untrimmed: a row that trims or moves "
        "the mmap threshold against the same row without (images/s: median of steps "
        f"{WARMUP + 1}-{steps}). GB: 10^9 "
        f"bytes. Every run in `{out}_runs.csv`, every step of every run in "
        f"`{out}_steps.csv`, the first round's steps drawn in `{out}.png`. "
        f"Command: `.venv-bench/bin/python benchmarks/long_run_rss.py{command}`.",
        "",
        f"| row | images/s | speed vs untrimmed | speed vs the peer's default | peak RSS (GB) "
        f"| peak RSS vs the peer's default | RSS after step {quarter} (GB) | RSS after step "
        f"{steps} (GB) | most RSS after a step (GB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in table.iterrows():
        lines.append(
            f"| {r.row} | {spread(r, 'images_per_s')} | "
            f"{spread(r, 'speed_vs_own_untrimmed', 'x')} | "
            f"{spread(r, 'speed_vs_peer_default', 'x')} | {spread(r, 'peak_rss_gb')} | "
            f"{spread(r, 'peak_rss_vs_peer_default', 'x')} | "
            f"{r[f'rss_after_step_{quarter}_gb']:.2f} | {r.rss_after_last_step_gb:.2f} | "
            f"{r.max_rss_after_a_step_gb:.2f} |"
        )
    (OUT / f"{out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def plot(per_step: Any, path: Path) -> None:
    """RSS after each step, one line per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4))
    first = per_step[per_step["round"] == per_step["round"].min()]
    for row, frame in first.groupby("row", sort=False):
        ax.plot(frame.step, frame.rss_gb, label=row, linestyle="--" if "stable" in row else "-")
    ax.set_xlabel("training step")
    ax.set_ylabel(f"RSS after the step (GB of {GB:.0e} bytes)")
    ax.set_title("ViT-S/16 SALT step on 2 CPU threads")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # off the lines
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
