"""Manifest reading and the checks every consumer relies on."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

#: The manifest schema: column -> meaning. Only ``frame_path`` is required; the builders
#: (``usjepa data build``) write all but ``label``.
SCHEMA = {
    "frame_path": "frame image, relative to the manifest's folder (or --root)",
    "dataset": "catalogue name of the source dataset",
    "organ": "anatomy shown",
    "source_kind": "image, video, volume or dicom",
    "source_path": "raw file the frame came from, relative to the raw download",
    "frame_index": "frame (video, cine) or slice (volume) index in the source",
    "patient_id": "patient or study; never split across train/val/test",
    "split": "train, val or test",
    "width": "frame width in pixels",
    "height": "frame height in pixels",
    "scan_mask": "scan-region mask image (255 inside), per frame or per clip",
    "phash": "64-bit perceptual hash (int64) for the leakage guard",
    "label": "optional integer class",
}
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
