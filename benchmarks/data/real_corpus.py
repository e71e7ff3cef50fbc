"""The record of a real corpus build: frames, sources and patients per set and source kind,
each set's build time, what the leakage check removed, and the shards.

Run by ``benchmarks/results/data/real_corpus/run.sh`` after it builds the corpus; reads
the corpus folder and the build times that script wrote, and writes
``real_corpus.{csv,md}`` beside them.

    python -m benchmarks.data.real_corpus CORPUS benchmarks/results/data/real_corpus
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from benchmarks.common import record_env


def summarise(corpus: Path, here: Path) -> tuple[pd.DataFrame, list[str]]:
    """One row per set and source kind; the leakage and shard lines."""
    manifest = pd.read_parquet(corpus / "manifest.parquet")
    clean = pd.read_parquet(corpus / "manifest_clean.parquet")
    times = pd.read_csv(here / "build_times.csv").set_index("step")["seconds"]
    rows = []
    for (name, kind), part in manifest.groupby(["dataset", "source_kind"], observed=True):
        kept = clean[(clean.dataset == name) & (clean.source_kind == kind)]
        rows.append(
            {
                "dataset": name,
                "source kind": kind,
                "sources": part["source_path"].nunique(),
                "patients": part["patient_id"].nunique(),
                "frames": len(part),
                "frames after the leakage check": len(kept),
                "build seconds (whole set)": round(float(times.get(name, float("nan"))), 1),
            }
        )
    table = pd.DataFrame(rows)
    leaks = pd.read_csv(corpus / "leaks.csv") if (corpus / "leaks.csv").exists() else None
    removed = len(manifest) - len(clean)
    lines = [
        f"Leakage check against the task: {0 if leaks is None else len(leaks)} matching "
        f"frame pairs, {removed} corpus frames removed "
        f"({float(times.get('leakage', float('nan'))):.0f} s).",
        f"Shards: {len(clean)} frames written in {float(times.get('shard', float('nan'))):.0f} s.",
        f"Task: built in {float(times.get('task_busi', float('nan'))):.0f} s.",
    ]
    return table, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("corpus", type=Path, help="the built corpus folder")
    parser.add_argument("here", type=Path, help="the results folder (build_times.csv)")
    ns = parser.parse_args()
    table, lines = summarise(ns.corpus, ns.here)
    table.to_csv(ns.here / "real_corpus.csv", index=False)
    total = table.frames.sum()
    text = [
        "# The real corpus: frames per set and source kind",
        "",
        f"{table.dataset.nunique()} sets, {total:,} frames "
        f"({table['frames after the leakage check'].sum():,} after the leakage check). "
        "Built by `bash benchmarks/results/data/real_corpus/run.sh`; build times are wall "
        "clock on the machine in `real_corpus.env.json` (2 build workers).",
        "",
        table.to_markdown(index=False),
        "",
        *[f"- {line}" for line in lines],
        "",
    ]
    record_env(ns.here / "real_corpus.md")
    (ns.here / "real_corpus.md").write_text("\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    main()
