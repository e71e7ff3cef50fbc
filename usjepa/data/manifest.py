"""Manifest reading and the checks every consumer relies on."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

#: The only required column; the rest of the schema (dataset, organ, source_kind,
#: source_path, frame_index, patient_id, split, width, height, scan_mask, label) is optional.
REQUIRED_COLUMNS = ("frame_path",)


class ManifestError(ValueError):
    """A manifest that is missing, unreadable or lacks required columns."""


def read_manifest(path: str | Path) -> pd.DataFrame:
    """Read a parquet or CSV manifest and check its shape.

    Raises:
        ManifestError: naming the file and the fix, if it is missing, empty, of an
            unknown format, or lacks ``frame_path``.
    """
    path = Path(path)
    if not path.exists():
        raise ManifestError(
            f"manifest {path} not found; build one with `usjepa data synth` "
            "(demo) or point data.manifest at an existing file"
        )
    if path.suffix == ".parquet":
        table = pd.read_parquet(path)
    elif path.suffix == ".csv":
        table = pd.read_csv(path)
    else:
        raise ManifestError(
            f"manifest {path}: unknown format {path.suffix!r}; use .parquet or .csv"
        )
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise ManifestError(
            f"manifest {path} lacks columns {missing}; it has {list(table.columns)}"
        )
    if table.empty:
        raise ManifestError(f"manifest {path} has no rows")
    if "scan_mask" not in table:
        table["scan_mask"] = ""
    return table
