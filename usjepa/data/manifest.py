"""Manifest reading and the checks every consumer relies on."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from usjepa.errors import UsjepaError

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


class ManifestError(UsjepaError, ValueError):
    """A manifest that is missing, unreadable or lacks required columns."""


def check_exists(path: Path) -> None:
    """The one 'manifest not found' error, shared by both readers."""
    if not path.exists():
        raise ManifestError(
            f"manifest {path} not found; build one with `usjepa data build` or "
            "`usjepa data synth`, or point data.init_args.manifest at an existing file"
        )


def check_shape(columns: list[str], rows: int, path: Path) -> None:
    """The schema checks shared by both readers: required columns, at least one row."""
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ManifestError(
            f"manifest {path} lacks the column(s) {missing}; it has {columns}. Rebuild it "
            "with `usjepa data build`, or rename the column that holds frame paths"
        )
    if rows == 0:
        raise ManifestError(
            f"manifest {path} has no rows: no frames to train on; build frames into it "
            "with `usjepa data build`, or point data.init_args.manifest at a built corpus"
        )


def read_manifest(path: str | Path) -> pd.DataFrame:
    """Read a parquet or CSV manifest into pandas (the data tools) and check its shape.
    Training reads the same files through :func:`usjepa.data.frames.load_frame_table`.

    Raises:
        ManifestError: naming the file and the fix, if it is missing, empty, of an
            unknown format, or lacks ``frame_path``.
    """
    path = Path(path)
    check_exists(path)
    if path.suffix == ".parquet":
        table = pd.read_parquet(path)
    elif path.suffix == ".csv":
        table = pd.read_csv(path)
    else:
        raise ManifestError(
            f"manifest {path}: unknown format {path.suffix!r}; use .parquet or .csv"
        )
    check_shape(list(table.columns), len(table), path)
    if "scan_mask" not in table:
        table["scan_mask"] = ""
    return table
