"""Manifest validation: every problem with its row, for ``usjepa data validate``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from usjepa.data.ingest.readers import SOURCE_KINDS
from usjepa.data.manifest import read_manifest

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Problem:
    """One finding: the 0-based data row (``-1`` for the whole file), column and message."""

    row: int
    column: str
    message: str


def _rows(mask: np.ndarray | pd.Series, column: str, message: str) -> list[Problem]:
    return [Problem(int(i), column, message) for i in np.flatnonzero(np.asarray(mask))]


def validate_manifest(
    path: str | Path,
    root: str | Path | None = None,
    num_classes: int | None = None,
    check_files: bool = True,
    progress: bool = True,
) -> list[Problem]:
    """Check a manifest and return every problem found (empty when it is clean).

    Checks: referenced frames and scan masks exist (``check_files``); no frame path twice;
    ``split`` is one of train/val/test; ``label`` is an integer in ``[0, num_classes)``
    (or non-negative when ``num_classes`` is unknown); width and height are positive; no
    patient appears in two splits (that would leak between training and evaluation).

    Args:
        path: parquet or CSV manifest.
        root: folder relative paths start from; the manifest's folder by default.
        num_classes: expected number of classes for the ``label`` column.
        check_files: stat every referenced file (slow on network storage).
        progress: show a progress bar while checking files.
    """
    table = read_manifest(path)
    base = Path(root) if root else Path(path).parent
    problems: list[Problem] = []
    frames = table["frame_path"].astype(str)
    problems += _rows(frames.duplicated(keep=False), "frame_path", "duplicate frame path")
    if "split" in table:
        bad = ~table["split"].isin(SPLITS)
        problems += [
            Problem(
                int(i), "split", f"unknown split {table['split'].iloc[i]!r}; use one of {SPLITS}"
            )
            for i in np.flatnonzero(bad.to_numpy())
        ]
    if "source_kind" in table:
        problems += _rows(
            ~table["source_kind"].isin(SOURCE_KINDS),
            "source_kind",
            f"unknown source kind; use {SOURCE_KINDS}",
        )
    if "label" in table:
        labels = pd.to_numeric(table["label"], errors="coerce")
        given = table["label"].notna()
        not_int = given & (labels.isna() | (labels % 1 != 0))
        problems += _rows(not_int, "label", "label is not an integer")
        high = num_classes if num_classes is not None else np.inf
        out = given & ~not_int & ((labels < 0) | (labels >= high))
        limit = f"[0, {num_classes})" if num_classes is not None else ">= 0"
        problems += _rows(out, "label", f"label out of range {limit}")
    for column in ("width", "height"):
        if column in table:
            problems += _rows(
                ~(pd.to_numeric(table[column], errors="coerce") > 0),
                column,
                f"{column} must be a positive number",
            )
    if "patient_id" in table and "split" in table:
        per_patient = table.groupby("patient_id")["split"].nunique()
        leaking = per_patient.index[per_patient > 1]
        mask = table["patient_id"].isin(leaking).to_numpy()
        problems += [
            Problem(
                int(i),
                "patient_id",
                f"patient {table['patient_id'].iloc[i]!r} appears in several "
                "splits; keep each patient in one split",
            )
            for i in np.flatnonzero(mask)
        ]
    if check_files:
        problems += _missing_files(table, base, progress)
    return sorted(problems, key=lambda p: (p.row, p.column))


def _missing_files(table: pd.DataFrame, base: Path, progress: bool) -> list[Problem]:
    found: list[Problem] = []
    columns = [c for c in ("frame_path", "scan_mask") if c in table]
    for column in columns:
        values = table[column].fillna("").astype(str).to_numpy()
        for i, rel in enumerate(
            tqdm(values, desc=f"checking {column}", disable=not progress, leave=False)
        ):
            if rel and not (base / rel).exists():
                found.append(Problem(i, column, f"file not found: {base / rel}"))
    return found


def format_report(problems: list[Problem], path: str | Path, limit: int = 50) -> str:
    """Human-readable summary: counts per column and message kind, then the first rows."""
    if not problems:
        return f"{path}: no problems found"
    frame = pd.DataFrame([p.__dict__ for p in problems])
    kinds = frame["message"].str.replace(r"[:'].*", "", regex=True)
    counts = frame.assign(kind=kinds).groupby(["column", "kind"]).size()
    lines = [f"{path}: {len(problems)} problem(s) in {frame['row'].nunique()} row(s)"]
    lines += [f"  {n:>8}  {col}: {kind}" for (col, kind), n in counts.items()]
    lines.append("first rows (0-based data row, column, message):")
    lines += [f"  row {p.row}: {p.column}: {p.message}" for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"  ... {len(problems) - limit} more; write them all with --report FILE")
    return "\n".join(lines)
