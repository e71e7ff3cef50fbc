"""litdata shards of a corpus (``usjepa data shard``) and the dataset that streams them.

Each dataset in the manifest becomes one shard folder ``OUT/<dataset>/`` of litdata
chunks. An item holds the frame's encoded bytes as they are on disk (no re-encoding),
its scan mask bit-packed and zlib-compressed, and its dataset and patient. litdata
splits chunks across DDP ranks and DataLoader workers, so each rank and worker reads
its own part; :class:`ShardCorpusDataset` decodes and augments items exactly like
:class:`usjepa.data.corpus.CorpusDataset`.
"""

from __future__ import annotations

import inspect
import json
import multiprocessing
import zlib
from collections.abc import Callable
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from litdata import CombinedStreamingDataset, StreamingDataset, optimize

from usjepa.data.frames import load_frame_table, no_training_rows
from usjepa.data.images import ImageReadError, read_gray
from usjepa.data.sampling import sample_seed

SHARDS_INFO = "usjepa_shards.json"

#: ``(image, scan mask, seed=...) -> sample dict``: the corpus transform of a decoded frame
SampleFn = Callable[..., dict[str, Any]]


def pack_mask(mask: np.ndarray) -> bytes:
    """A binary ``[H, W]`` mask (nonzero inside) as ``H, W`` and zlib-compressed bits."""
    h, w = mask.shape
    header = np.array([h, w], np.uint32).tobytes()
    return header + zlib.compress(np.packbits(mask > 127).tobytes(), 1)


def unpack_mask(blob: bytes) -> np.ndarray:
    """The inverse of :func:`pack_mask`: ``[H, W]`` uint8, 255 inside."""
    h, w = np.frombuffer(blob[:8], np.uint32)
    bits = np.frombuffer(zlib.decompress(blob[8:]), np.uint8)
    return (np.unpackbits(bits, count=int(h) * int(w)).reshape(int(h), int(w)) * 255).astype(
        np.uint8
    )


@lru_cache(maxsize=256)
def _packed_mask(path: str) -> bytes:
    return pack_mask(read_gray(path, "scan mask")) if path else b""


def _item(row: tuple[str, str, str], root: str) -> dict[str, Any]:
    frame, mask, patient = row
    data = (Path(root) / frame).read_bytes()
    if mask:
        packed = _packed_mask(str(Path(root) / mask))
    else:  # no mask: the whole frame is scan region
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise ValueError(f"cannot decode frame {Path(root) / frame}; rebuild or drop it")
        packed = pack_mask(np.full(image.shape, 255, np.uint8))
    return {"image": data, "mask": packed, "patient": patient}


def write_shards(
    manifest: str | Path,
    out: str | Path,
    root: str | Path | None = None,
    val_fraction: float = 0.05,
    chunk_bytes: str = "64MB",
    workers: int = 1,
) -> dict[str, int]:
    """Write litdata shards of the manifest's training rows, one folder per dataset.

    Rows of the validation split (the manifest's ``val`` rows, else the same patient hash
    :class:`usjepa.data.CorpusDataModule` uses with ``val_fraction``) are left out, so
    validation on files and training on shards never share a patient.

    Returns:
        frames written per dataset.
    """
    table = load_frame_table(manifest)
    base = Path(root) if root else Path(manifest).parent
    if len(table) and not (base / table.frame_path[0]).exists():
        raise FileNotFoundError(
            f"frame {table.frame_path[0]} of {manifest} is not under {base}: the manifest's "
            "frame paths are relative to the corpus folder it was built in; give that "
            "folder with --root"
        )
    out = Path(out)
    train = ~table.val_rows(val_fraction)
    if len(table) and not train.any():
        raise ValueError(no_training_rows(manifest, table, "--val-fraction 0"))
    codes = np.where(table.dataset.codes < 0, 0, table.dataset.codes)
    names = table.dataset.value_list() or ["corpus"]
    written = {}
    for code, name in enumerate(names):
        rows = np.flatnonzero(train & (codes == code))
        if len(rows) == 0:
            continue
        inputs = [
            (table.frame_path[int(r)], table.scan_mask[int(r)], table.patient[int(r)]) for r in rows
        ]
        start_method = multiprocessing.get_start_method(allow_none=True)
        optimize(
            fn=partial(_item, root=str(base)),
            inputs=inputs,
            output_dir=str(out / name),
            chunk_bytes=chunk_bytes,
            num_workers=max(1, workers),
            mode="overwrite",
        )
        # litdata switches the process to spawn; later DataLoaders should keep the default
        multiprocessing.set_start_method(start_method, force=True)
        written[name] = len(rows)
    out.mkdir(parents=True, exist_ok=True)
    (out / SHARDS_INFO).write_text(json.dumps({"datasets": written}, indent=1))
    return written


def shard_datasets(shards: str | Path) -> dict[str, int]:
    """Datasets and frame counts of a shard folder written by :func:`write_shards`."""
    info = Path(shards) / SHARDS_INFO
    if not info.exists():
        raise FileNotFoundError(
            f"{info} not found: {shards} is not a shard folder; write one with "
            "`usjepa data shard MANIFEST OUT`"
        )
    result: dict[str, int] = json.loads(info.read_text())["datasets"]
    return result


class ShardCorpusDataset(StreamingDataset):  # type: ignore[misc]  # litdata ships no types
    """Frames streamed from one dataset's shards, decoded and augmented.

    ``transform`` is a callable ``(image, mask[, seed]) -> sample dict`` (the corpus
    datasets' shared crop-resize-normalise step; given ``seed``, it draws from the frame's
    own seed); the rest are :class:`litdata.StreamingDataset`
    arguments (``shuffle``, ``seed``, ``drop_last`` ...).
    """

    def __init__(self, input_dir: str, transform: SampleFn, **kwargs: Any) -> None:
        super().__init__(input_dir, **kwargs)
        self.frame_transform = transform  # litdata's own `transform` attribute is separate
        try:  # a transform that takes ``seed`` gets each frame's own (exact resume)
            self.transform_takes_seed = "seed" in inspect.signature(transform).parameters
        except (TypeError, ValueError):
            self.transform_takes_seed = False
        self._salt = zlib.crc32(str(self.input_dir.path).encode())  # this dataset's part

    def __getitem__(self, index: Any) -> dict[str, Any]:
        """The decoded, augmented frame. Its crop and mask draws come from a seed of its
        own, ``(seed, epoch, dataset, item)``, so they do not depend on the worker that
        loads it, and a resumed stream (litdata restores the order) repeats them."""
        item = super().__getitem__(index)
        image = cv2.imdecode(np.frombuffer(item["image"], np.uint8), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise ImageReadError(
                f"a frame in {self.input_dir.path} cannot be decoded; re-shard the corpus "
                "with `usjepa data shard` after `usjepa data validate`"
            )
        mask = unpack_mask(item["mask"])
        if not self.transform_takes_seed:
            return self.frame_transform(image, mask)
        position = int(getattr(index, "index", index))
        seed = sample_seed(int(self.seed), int(self.current_epoch), self._salt, position)
        return self.frame_transform(image, mask, seed=seed)


def combined_shards(
    shards: str | Path,
    transform: SampleFn,
    weights: dict[str, float] | None = None,
    seed: int = 0,
    shuffle: bool = True,
) -> StreamingDataset | CombinedStreamingDataset:
    """One streaming dataset over every dataset folder in ``shards``.

    ``weights`` (dataset -> sampling share) draws datasets in those proportions; an
    epoch then ends when the first dataset runs out (litdata's rule), so train by
    steps. Without weights every frame is seen once per epoch.
    """
    names = list(shard_datasets(shards))
    parts = [
        ShardCorpusDataset(
            str(Path(shards) / n), transform, shuffle=shuffle, seed=seed, drop_last=False
        )
        for n in names
    ]
    if len(parts) == 1 and weights is None:
        return parts[0]
    if weights is None:
        return CombinedStreamingDataset(parts, seed=seed, iterate_over_all=True)
    missing = set(names) - set(weights)
    if missing:
        raise ValueError(f"sampling weights lack datasets {sorted(missing)}")
    return CombinedStreamingDataset(
        parts, seed=seed, weights=[weights[n] for n in names], iterate_over_all=False
    )
