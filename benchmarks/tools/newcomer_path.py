"""The README's path for a newcomer, on a clean clone: ``make install``, ``make pretrain``
and ``make probe`` with no arguments, and the table ``make probe`` prints set beside the
README's demo table (``benchmarks/results/quality/demo/demo_current.csv``).

    python -m benchmarks.tools.newcomer_path [--keep DIR]

Writes ``results/tools/newcomer_path/newcomer_path.{md,csv}``. Takes about 20 minutes on 2 CPU
cores (the demo's two pretraining stages, then the probe).
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import pandas as pd

from benchmarks.common import record_env, results_dir

ROOT = Path(__file__).resolve().parents[2]
OUT = results_dir(__file__)


def run(cmd: list[str], cwd: Path) -> None:
    """Run one step of the path, streaming its output; stop on failure."""
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=cwd, check=True)


#: the README's table names the demo student by its variant
README_NAMES = {"student_salt": "salt_usrc"}


def write_results(summary: Path, minutes: float, commit: str, note: str = "") -> str:
    """Set a clean clone's ``probe_summary.csv`` beside the README's table; write both files."""
    got = pd.read_csv(summary)
    readme = pd.read_csv(OUT / "demo_current.csv").set_index("model")
    rows = []
    for r in got.itertuples():
        ref = readme.loc[README_NAMES.get(r.model, r.model)]
        rows.append(
            {
                "model": r.model,
                "clean_clone": f"{r.mean:.1f} ± {r.std:.1f}",
                "readme": f"{ref['mean']:.1f} ± {ref['std']:.1f}",
                "difference": round(r.mean - ref["mean"], 1),
                "within_readme_spread": bool(abs(r.mean - ref["mean"]) <= ref["std"]),
            }
        )
    table = pd.DataFrame(rows)
    table.to_csv(OUT / "newcomer_path.csv", index=False)
    text = "\n".join(
        [
            "# The README's newcomer path on a clean clone",
            "",
            "`git clone`, then `make install`, `make pretrain` and `make probe` with no "
            f"arguments, at commit {commit}, on 2 CPU cores: {minutes:.1f} minutes from "
            "install to table. Command: `python -m benchmarks.tools.newcomer_path`." + note,
            "",
            "Macro F1 (%), mean ± std over the probe's 5 seeds, beside the README's demo "
            "table (`benchmarks/results/quality/demo/demo_current.md`):",
            "",
            table.to_markdown(index=False),
            "",
        ]
    )
    record_env(OUT / "newcomer_path.md")
    (OUT / "newcomer_path.md").write_text(text)
    return text


def main() -> None:
    """Clone, install, pretrain, probe; compare with the README's table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", default=None, help="clone here and keep it (default: temp)")
    parser.add_argument("--note", default="", help="a sentence on the run's conditions")
    parser.add_argument(
        "--from-run", nargs=3, metavar=("SUMMARY_CSV", "MINUTES", "COMMIT"), default=None,
        help="only write the results from a clean clone's finished path",
    )  # fmt: skip
    args = parser.parse_args()
    if args.from_run:
        summary, minutes, commit = args.from_run
        print(write_results(Path(summary), float(minutes), commit, args.note))
        return
    commit = subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True)
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(args.keep or tmp) / "usjepa"
        run(["git", "clone", "-q", str(ROOT), str(clone)], ROOT)
        start = time.time()
        for target in ("install", "pretrain", "probe"):
            run(["make", target], clone)
        minutes = (time.time() - start) / 60
        summary = clone / "runs/probe/demo/probe_summary.csv"
        print(write_results(summary, minutes, commit.strip(), args.note))


if __name__ == "__main__":
    main()
