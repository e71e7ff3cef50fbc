"""Before / after a change: the speed benchmarks run on a base commit and on the current
tree, alternately in one session, with the ratios of their key figures.

Single runs on a shared machine vary by about 8 % (measured: the same shard pipeline
gave 1,562 to 2,048 frames/s in eight alternating runs), so each side runs ``--repeats``
times, alternating base and current, and each figure keeps its best run (highest rate,
lowest time), which is the figure least disturbed by other load.

The base commit is checked out in a git worktree and run with the same Python
environment (its own ``usjepa`` first on ``PYTHONPATH``). For each benchmark the base
runs first, then the current tree, so both see the same machine load. Both sides write
their benchmarks' own results to scratch folders (the recorded ones are left alone). A
base from before the benchmarks were grouped by question runs from its flat layout.
Writes ``results/tools/side_by_side/side_by_side.{md,csv}``.

    python -m benchmarks.tools.side_by_side --base 61374f9
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from benchmarks.common import record_env, results_dir

ROOT = Path(__file__).resolve().parents[2]
RESULTS = results_dir(__file__)


def _loading(out: Path) -> dict[str, float]:
    table = pd.read_csv(out / "loading.csv")
    last = table[table["pass"] == 1].set_index("what")
    rate = last["per_second_per_core"]
    figures = {
        f"loading {k} (per s per core)": float(rate[k]) for k in ("files", "shards", "masks")
    }
    for k in ("files", "shards"):  # against JPEG decoding in the same run: drift cancels
        figures[f"loading {k} / decode"] = float(rate[k] / rate["decode"])
    return figures


def _probe_speed(out: Path) -> dict[str, float]:
    table = pd.read_csv(out / "probe_speed.csv")
    grid = float(table["seconds"].iloc[0])
    return {
        "probe head grid (s)": grid,
        "probe grid / sklearn time": grid / float(table["seconds"].iloc[1]),
    }


def _manifest(out: Path) -> dict[str, float]:
    row = pd.read_csv(out / "manifest_scale.csv").set_index("loader").loc["load_frame_table"]
    return {
        "manifest 5M rows load (s)": float(row["load_s"]),
        "manifest peak (MB)": float(row["max_rss_mb"]),
    }


def _scan_region(out: Path) -> dict[str, float]:
    table = pd.read_csv(out / "scan_region_side_by_side.csv")
    fps, base = float(table["fps"].iloc[0]), float(table["fps_baseline"].iloc[0])
    figures = {
        "scan region (frames per s per core)": fps,
        "scan region speed / threshold baseline": fps / base,
    }
    for kind, part in table.groupby("type"):
        figures[f"scan region IoU p5, {kind}"] = float(part["iou"].quantile(0.05))
    return figures


# name -> (command line after the script, reader of its results, lower is better)
BENCHES: dict[str, tuple[list[str], Callable[[Path], dict[str, float]], set[str]]] = {
    "loading": (["--out", "{out}/loading"], _loading, set()),
    "probe_speed": (
        ["--out", "{out}/probe_speed"],
        _probe_speed,
        {"probe head grid (s)", "probe grid / sklearn time"},
    ),
    "manifest_scale": (
        ["--out", "{out}/manifest_scale"],
        _manifest,
        {"manifest 5M rows load (s)", "manifest peak (MB)"},
    ),
    "scan_region": (["--tag", "side_by_side", "--out", "{out}"], _scan_region, set()),
}


def run(tree: Path, name: str, out: Path) -> dict[str, float]:
    """Run one benchmark of ``tree`` (its own script and package) into ``out``."""
    args, read, _ = BENCHES[name]
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(tree)}
    grouped = [p for p in (tree / "benchmarks").glob(f"*/{name}.py") if p.parent.name != "results"]
    if grouped:  # benchmarks/<question>/<name>.py, run as a module
        command = [sys.executable, "-m", f"benchmarks.{grouped[0].parent.name}.{name}"]
    else:  # the flat layout of earlier commits
        command = [sys.executable, str(tree / "benchmarks" / f"{name}.py")]
    command += [a.format(out=out) for a in args]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL)
    return read(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", required=True, help="the commit to compare with")
    parser.add_argument("--benches", default=",".join(BENCHES))
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs per side")
    parser.add_argument("--out", default=str(RESULTS / "side_by_side"))
    args = parser.parse_args()
    rev = subprocess.run(
        ["git", "rev-parse", "--short", args.base],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        subprocess.run(
            ["git", "worktree", "add", "-q", "--detach", str(base), rev], cwd=ROOT, check=True
        )
        try:
            for name in args.benches.split(","):
                lower = BENCHES[name][2]
                runs: dict[str, list[dict[str, float]]] = {"base": [], "current": []}
                for _ in range(args.repeats):
                    runs["base"].append(run(base, name, Path(tmp) / "out"))
                    runs["current"].append(run(ROOT, name, Path(tmp) / "current"))
                best = {
                    side: {
                        key: (min if key in lower else max)(r[key] for r in results)
                        for key in results[0]
                    }
                    for side, results in runs.items()
                }
                before, after = best["base"], best["current"]
                for key, value in after.items():
                    old = before.get(key)
                    ratio = None if not old else value / old
                    better = None if ratio is None else (ratio <= 1 if key in lower else ratio >= 1)
                    rows.append(
                        {
                            "benchmark": name,
                            "figure": key,
                            "base": old,
                            "current": value,
                            "current / base": ratio,
                            "lower is better": key in lower,
                            "not worse": better,
                        }
                    )
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT)
    table = pd.DataFrame(rows)
    out = Path(args.out)
    table.to_csv(out.with_suffix(".csv"), index=False)
    lines = [
        f"# Speed benchmarks: {rev} (base) against {head} (current), side by side",
        "",
        f"Each benchmark ran {args.repeats} times on the base commit and {args.repeats} times "
        "on the current tree, alternating, in one session on the same machine "
        f"(`python -m benchmarks.tools.side_by_side --base {rev}`); each figure is the best run "
        "of its side. Ratios are current / base; for times and memory lower is better. "
        "The current tree's last run is what `benchmarks/results/` records.",
        "",
        "| benchmark | figure | base | current | current / base |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = "" if r["current / base"] is None else f"{r['current / base']:.2f}"
        base_v = "" if r["base"] is None else f"{r['base']:,.3g}"
        lines.append(
            f"| {r['benchmark']} | {r['figure']} | {base_v} | {r['current']:,.3g} | {ratio} |"
        )
    record_env(out.with_suffix(".md"))
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
