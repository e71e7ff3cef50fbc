"""Manifest reading and the checks every consumer relies on.

There is one reader, :class:`ManifestFile`: it finds the file, reads parquet or CSV
through Arrow, and checks the schema, with one set of messages. Two views sit on it:
:func:`read_manifest` (a pandas frame, for the data tools) and
:func:`usjepa.data.frames.load_frame_table` (columnar, column by column, for training
on millions of rows).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

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


class ManifestFile:
    """A parquet or CSV manifest opened through Arrow and checked against the schema.

    Parquet is read column by column (:meth:`read` with ``columns``, or
    :meth:`iter_batches`), so a caller keeping a few columns of millions of rows never
    holds the whole file; a CSV is parsed once.

    Args:
        path: the ``.parquet`` or ``.csv`` file.
        dictionary: columns to read dictionary-encoded (repeated values as codes).

    Raises:
        ManifestError: naming the file and the fix, if it is missing, unreadable, empty,
            of an unknown format, or lacks ``frame_path``.
    """

    def __init__(self, path: str | Path, dictionary: Sequence[str] = ()) -> None:
        self.path = Path(path)
        check_exists(self.path)
        self._parquet: pq.ParquetFile | None = None
        self._table: pa.Table | None = None
        try:
            if self.path.suffix == ".parquet":
                names = pq.read_schema(self.path).names
                wanted = [c for c in dictionary if c in names]
                self._parquet = pq.ParquetFile(self.path, read_dictionary=wanted)
                self.names, self.num_rows = names, self._parquet.metadata.num_rows
            elif self.path.suffix == ".csv":
                self._table = pacsv.read_csv(self.path)
                for name in dictionary:
                    if name in self._table.column_names:
                        column = self._table.column(name).dictionary_encode()
                        at = self._table.column_names.index(name)
                        self._table = self._table.set_column(at, name, column)
                self.names, self.num_rows = self._table.column_names, self._table.num_rows
            else:
                raise ManifestError(
                    f"manifest {self.path}: unknown format {self.path.suffix!r}; "
                    "use .parquet or .csv"
                )
        except (pa.ArrowInvalid, OSError) as err:
            raise ManifestError(
                f"manifest {self.path} cannot be read ({err}); rebuild it with "
                "`usjepa data build`, or check that it is a parquet or CSV file"
            ) from None
        check_shape(list(self.names), self.num_rows, self.path)

    def read(self, columns: list[str] | None = None) -> pa.Table:
        """The given columns (all by default) as one Arrow table."""
        if self._parquet is not None:
            return self._parquet.read(columns=columns)
        assert self._table is not None
        return self._table if columns is None else self._table.select(columns)

    def iter_batches(self, column: str, batch_size: int = 1 << 18) -> Iterator[pa.Array]:
        """One column in batches of ``batch_size`` rows."""
        if self._parquet is not None:
            for batch in self._parquet.iter_batches(batch_size=batch_size, columns=[column]):
                yield batch.column(0)
        else:
            assert self._table is not None
            for batch in self._table.select([column]).to_batches(max_chunksize=batch_size):
                yield batch.column(0)


def read_manifest(path: str | Path) -> pd.DataFrame:
    """A parquet or CSV manifest as a pandas frame (the data tools), read and checked by
    :class:`ManifestFile`; ``scan_mask`` is added empty when absent.

    Raises:
        ManifestError: naming the file and the fix, if it is missing, unreadable, empty,
            of an unknown format, or lacks ``frame_path``.
    """
    table = ManifestFile(path).read().to_pandas()
    if "scan_mask" not in table:
        table["scan_mask"] = ""
    return table
