"""Columnar frame tables: millions of manifest rows without per-row Python objects.

A 5M-row manifest read through pandas makes 5M Python strings per text column (slow to
build, and every DataLoader worker's reference counting touches their pages, so forked
workers slowly copy them). Here each text column is one byte buffer plus an offsets
array (Arrow's layout, read zero-copy from parquet), and repeated values (dataset,
patient, split, per-clip scan masks) are dictionary codes. Workers share these buffers
copy-on-write and never write to them.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from usjepa.data.manifest import ManifestFile

_DICT_COLUMNS = ("dataset", "patient_id", "split", "scan_mask")


class StringColumn:
    """Immutable strings as a ``uint8`` buffer and ``int64`` offsets."""

    def __init__(self, data: np.ndarray, offsets: np.ndarray) -> None:
        self.data, self.offsets = data, offsets

    @classmethod
    def from_arrow(cls, array: pa.Array | pa.ChunkedArray) -> StringColumn:
        """Pack an Arrow string column."""
        if isinstance(array, pa.ChunkedArray):
            array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
        array = pc.fill_null(array.cast(pa.large_string()), "")
        _, offsets, data = array.buffers()
        n = len(array)
        off = np.frombuffer(offsets, np.int64)[array.offset : array.offset + n + 1]
        raw = np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)
        return cls(raw, off)

    @classmethod
    def from_strings(cls, values: list[str]) -> StringColumn:
        """Pack a list of strings."""
        return cls.from_arrow(pa.array(values, pa.large_string()))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> str:
        return self.data[self.offsets[index] : self.offsets[index + 1]].tobytes().decode()

    @property
    def nbytes(self) -> int:
        """Memory held, in bytes."""
        return self.data.nbytes + self.offsets.nbytes


@dataclass
class Codes:
    """Dictionary-encoded column: ``codes[i]`` indexes ``values`` (``-1`` for null)."""

    codes: np.ndarray
    values: StringColumn

    def __getitem__(self, index: int) -> str:
        code = int(self.codes[index])
        return self.values[code] if code >= 0 else ""

    def value_list(self) -> list[str]:
        """Unpack to a list of Python strings."""
        return [self.values[i] for i in range(len(self.values))]

    @classmethod
    def from_arrow(cls, array: pa.Array | pa.ChunkedArray) -> Codes:
        """Dictionary-encode an Arrow column."""
        if isinstance(array, pa.ChunkedArray):
            array = pa.chunked_array(
                [
                    c if pa.types.is_dictionary(c.type) else c.dictionary_encode()
                    for c in array.chunks
                ],
            )
            array = array.unify_dictionaries().combine_chunks() if array.num_chunks else array
        if not pa.types.is_dictionary(array.type):
            array = array.dictionary_encode()
        codes = pc.fill_null(array.indices.cast(pa.int32()), -1).to_numpy(zero_copy_only=False)
        return cls(codes, StringColumn.from_arrow(array.dictionary.cast(pa.large_string())))


@dataclass
class FrameTable:
    """The manifest columns the corpus loader needs, in columnar form."""

    frame_path: StringColumn
    scan_mask: Codes
    dataset: Codes
    patient: Codes
    split: Codes
    phash: np.ndarray | None

    def __len__(self) -> int:
        return len(self.frame_path)

    @property
    def nbytes(self) -> int:
        """Memory held, in bytes."""
        parts = [self.frame_path.nbytes, self.phash.nbytes if self.phash is not None else 0]
        for c in (self.scan_mask, self.dataset, self.patient, self.split):
            parts += [c.codes.nbytes, c.values.nbytes]
        return sum(parts)

    def rows_in_split(self, name: str) -> np.ndarray:
        """Row indices whose ``split`` equals ``name``."""
        values = self.split.value_list()
        if name not in values:
            return np.zeros(len(self), bool)
        result: np.ndarray = self.split.codes == values.index(name)
        return result

    def val_rows(self, fraction: float) -> np.ndarray:
        """The manifest's ``val`` split, else a stable hash of the patient (of the frame
        path when there is no patient column) below ``fraction``."""
        rows = self.rows_in_split("val")
        if rows.any():
            return rows
        if len(self.patient.values):
            names = self.patient.value_list()
            buckets = np.array([zlib.crc32(s.encode()) % 10_000 for s in names], np.int64)
            result: np.ndarray = buckets[self.patient.codes] < fraction * 10_000
            return result
        buckets = np.array(
            [zlib.crc32(self.frame_path[i].encode()) % 10_000 for i in range(len(self))]
        )
        return buckets < fraction * 10_000


def no_training_rows(manifest: str | Path, table: FrameTable, fix: str) -> str:
    """The message for a manifest whose every row :meth:`FrameTable.val_rows` holds out
    (a corpus of one or a few patients, all hashed into the validation share), naming
    ``fix``: the option that keeps them for training."""
    if table.rows_in_split("val").all():
        return f"{manifest}: every row is in its 'val' split, so none is left to train on"
    names = len(table.patient.value_list())
    held = f"{names} patient(s)" if names else f"{len(table)} frame(s) (no patient column)"
    return (
        f"{manifest}: all its {held} fall in the validation share, so no "
        f"frame is left to train on (a corpus of few patients); set {fix} to train on "
        "them all, or build more patients into the corpus"
    )


def _empty_codes(n: int) -> Codes:
    return Codes(np.full(n, -1, np.int32), StringColumn.from_strings([]))


def load_frame_table(path: str | Path) -> FrameTable:
    """A parquet (or CSV) manifest as a :class:`FrameTable`, read through the one manifest
    reader (:class:`~usjepa.data.manifest.ManifestFile`) column by column, so memory
    peaks near the size of what is kept.

    Raises:
        ManifestError: naming the file and the fix when it is missing, unreadable or
            lacks ``frame_path``.
    """
    file = ManifestFile(path, dictionary=_DICT_COLUMNS)
    names, rows = file.names, file.num_rows

    def codes(name: str) -> Codes:
        if name not in names:
            return _empty_codes(rows)
        return Codes.from_arrow(file.read([name]).column(0))

    phash = None
    if "phash" in names:
        column = file.read(["phash"]).column(0)
        if column.null_count == 0:
            phash = column.to_numpy().astype(np.int64)
    table = FrameTable(
        _streamed_strings(file, "frame_path", rows),
        codes("scan_mask"),
        codes("dataset"),
        codes("patient_id"),
        codes("split"),
        phash,
    )
    pa.default_memory_pool().release_unused()
    return table


def _streamed_strings(file: ManifestFile, name: str, rows: int) -> StringColumn:
    """A string column read in batches into one preallocated buffer: peak memory is the
    column once plus a batch, not the column twice."""
    total = 0
    for column in file.iter_batches(name):
        total += int(pc.sum(pc.binary_length(column)).as_py() or 0)
    data = np.empty(total, np.uint8)
    offsets = np.zeros(rows + 1, np.int64)
    row = pos = 0
    for column in file.iter_batches(name):
        part = StringColumn.from_arrow(column)
        size = int(part.offsets[-1] - part.offsets[0])
        data[pos : pos + size] = part.data[part.offsets[0] : part.offsets[-1]]
        offsets[row + 1 : row + len(part) + 1] = part.offsets[1:] - part.offsets[0] + pos
        row, pos = row + len(part), pos + size
    return StringColumn(data, offsets)


def dataset_shares(counts: np.ndarray, mode: str, temperature: float = 1.0) -> np.ndarray:
    """Each dataset's share of the draws from its frame count: ``size`` proportional to
    ``n``, ``uniform`` equal, ``temperature`` proportional to ``n ** (1 / temperature)``
    (1 is ``size``; large values approach ``uniform``). Empty datasets get 0."""
    if mode not in ("size", "uniform", "temperature"):
        raise ValueError(f"sampling mode {mode!r}: use size, uniform or temperature")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    counts = np.asarray(counts, np.float64)
    power = {"size": 1.0, "uniform": 0.0, "temperature": 1.0 / temperature}[mode]
    share = np.where(counts > 0, counts**power, 0.0)
    result: np.ndarray = share / share.sum()
    return result


def sampling_weights(
    dataset_codes: np.ndarray, mode: str = "size", temperature: float = 1.0
) -> np.ndarray | None:
    """Per-row sampling weights that give each dataset its :func:`dataset_shares` share
    (``None`` for ``size``: plain shuffling already does that)."""
    dataset_shares(np.ones(1), mode, temperature)  # checks the arguments
    if mode == "size":
        return None
    codes = np.where(dataset_codes < 0, 0, dataset_codes)
    counts = np.bincount(codes).astype(np.float64)
    share = dataset_shares(counts, mode, temperature)
    per_row = np.divide(share, counts, out=np.zeros_like(share), where=counts > 0)
    result: np.ndarray | None = per_row[codes]
    return result
