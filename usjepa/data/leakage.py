"""Leakage guard: perceptual hashes of benchmark test images and their near duplicates.

A 64-bit DCT perceptual hash (the low 8x8 frequencies of a 32x32 thumbnail, thresholded
at their median) survives resizing, re-encoding and mild intensity changes, so a test
image re-extracted into a pretraining corpus at another size still matches. Near
duplicates are pairs within ``max_distance`` bits; they are found by exact matches on
``max_distance + 1`` bands of the hash (by the pigeonhole principle a pair within the
distance agrees on at least one band), so the search scales to millions of frames.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from usjepa.data.images import read_gray


class LeakageError(RuntimeError):
    """A pretraining corpus that contains benchmark test images."""


def phash(image: np.ndarray) -> int:
    """64-bit perceptual hash of a grayscale uint8 image, as a signed int64 value."""
    thumb = cv2.resize(image, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(thumb)[:8, :8].flatten()
    bits = low > np.median(low[1:])
    value = np.packbits(bits).view(">u8")[0]
    return int(np.int64(np.uint64(value).view(np.int64)))


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bitwise distance between int64 hash arrays (broadcasting)."""
    x = np.bitwise_xor(a.astype(np.int64), b.astype(np.int64)).view(np.uint64)
    return np.bitwise_count(x).astype(np.int64)


def hash_files(paths: list[Path], progress: bool = True, desc: str = "hashing") -> np.ndarray:
    """Perceptual hashes of image files (int64)."""
    out = np.empty(len(paths), np.int64)
    for i, path in enumerate(tqdm(paths, desc=desc, disable=not progress, leave=False)):
        out[i] = phash(read_gray(path))
    return out


def task_test_index(task_root: str | Path, progress: bool = True) -> pd.DataFrame:
    """Hashes of a task's test images (UltraBench layout: ``test.json`` + ``images/``).

    Cached beside the task as ``test_hashes.parquet``, keyed by the split file's size and
    modification time, so a second call is free.
    """
    root = Path(task_root)
    split = root / "test.json"
    if not split.exists():
        raise FileNotFoundError(
            f"{split} not found: a task root needs test.json (UltraBench layout); "
            "make one with `usjepa data make-task`"
        )
    stamp = f"{split.stat().st_size}:{split.stat().st_mtime_ns}"
    cache = root / "test_hashes.parquet"
    if cache.exists():
        cached = pd.read_parquet(cache)
        if cached.attrs.get("stamp") == stamp or (
            len(cached) and str(cached["stamp"].iloc[0]) == stamp
        ):
            return cached.drop(columns="stamp")
    records = json.loads(split.read_text())
    images = [str(r["image"]) for r in records]
    paths = [
        root / "images" / Path(p).name if not (root / p).exists() else root / p for p in images
    ]
    hashes = hash_files(paths, progress, desc=f"hashing {root.name} test images")
    table = pd.DataFrame({"task": root.name, "image": images, "phash": hashes})
    table.assign(stamp=stamp).to_parquet(cache, index=False)
    return table


def load_index(sources: list[str | Path], progress: bool = True) -> pd.DataFrame:
    """A test-image hash index from task roots and/or saved index files (parquet/CSV)."""
    parts = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            parts.append(task_test_index(path, progress))
        elif path.suffix == ".parquet":
            parts.append(pd.read_parquet(path))
        elif path.suffix == ".csv":
            parts.append(pd.read_csv(path))
        else:
            raise FileNotFoundError(
                f"test index {path}: not a task folder, .parquet or .csv index; build one "
                "with `usjepa data check-leakage --save-index FILE TASK_ROOT ...`"
            )
    if not parts:
        return pd.DataFrame({"task": [], "image": [], "phash": np.array([], np.int64)})
    return pd.concat(parts, ignore_index=True)


def _bands(hashes: np.ndarray, n: int) -> list[np.ndarray]:
    bits = 64 // n
    u = hashes.astype(np.int64).view(np.uint64)
    out = []
    for k in range(n):
        width = bits if k < n - 1 else 64 - bits * (n - 1)
        out.append(((u >> np.uint64(bits * k)) & np.uint64((1 << width) - 1)).astype(np.int64))
    return out


def find_matches(corpus: np.ndarray, index: np.ndarray, max_distance: int = 4) -> pd.DataFrame:
    """All (corpus row, index row, distance) pairs within ``max_distance`` bits."""
    if max_distance < 0 or max_distance > 15:
        raise ValueError(f"max_distance must be in [0, 15], got {max_distance}")
    if len(corpus) == 0 or len(index) == 0:
        return pd.DataFrame({"row": [], "index_row": [], "distance": []}, dtype=np.int64)
    found = []
    corpus_bands = _bands(corpus, max_distance + 1)
    index_bands = _bands(index, max_distance + 1)
    for cb, ib in zip(corpus_bands, index_bands):
        left = pd.DataFrame({"row": np.arange(len(corpus)), "key": cb})
        right = pd.DataFrame({"index_row": np.arange(len(index)), "key": ib})
        pairs = left.merge(right, on="key")[["row", "index_row"]]
        found.append(pairs)
    pairs = pd.concat(found).drop_duplicates()
    rows, cols = pairs["row"].to_numpy(), pairs["index_row"].to_numpy()
    dist = hamming(corpus[rows], index[cols])
    keep = dist <= max_distance
    return pd.DataFrame(
        {"row": rows[keep], "index_row": cols[keep], "distance": dist[keep]}
    ).sort_values(["row", "distance"], ignore_index=True)


def manifest_hashes(table: pd.DataFrame, root: Path, progress: bool = True) -> np.ndarray:
    """The manifest's ``phash`` column, computing hashes for rows that lack one."""
    if "phash" in table and table["phash"].notna().all():
        return table["phash"].to_numpy(np.int64)
    paths = [root / p for p in table["frame_path"].astype(str)]
    return hash_files(paths, progress, desc="hashing corpus frames")


def leak_matches(
    hashes: np.ndarray,
    path_of: Callable[[int], str],
    index: pd.DataFrame,
    max_distance: int = 4,
) -> pd.DataFrame:
    """Corpus rows whose hash is within ``max_distance`` bits of a test image's: one row
    per match with the frame path (``path_of(row)``), task, test image and distance."""
    matches = find_matches(hashes, index["phash"].to_numpy(np.int64), max_distance)
    rows = matches["row"].to_numpy()
    return pd.DataFrame(
        {
            "row": rows,
            "frame_path": [path_of(int(r)) for r in rows],
            "task": index["task"].to_numpy()[matches["index_row"]],
            "test_image": index["image"].to_numpy()[matches["index_row"]],
            "distance": matches["distance"].to_numpy(),
            "kind": np.where(matches["distance"] == 0, "exact", "near"),
        }
    )


def check_leakage(
    table: pd.DataFrame,
    root: Path,
    index: pd.DataFrame,
    max_distance: int = 4,
    progress: bool = True,
) -> pd.DataFrame:
    """Rows of a manifest table that duplicate a test image (see :func:`leak_matches`)."""
    hashes = manifest_hashes(table, root, progress)
    paths = table["frame_path"].astype(str).to_numpy()
    return leak_matches(hashes, lambda r: str(paths[r]), index, max_distance)


def guard_corpus(
    hashes: np.ndarray,
    path_of: Callable[[int], str],
    sources: list[str | Path],
    allow: bool = False,
    max_distance: int = 4,
    progress: bool = True,
) -> pd.DataFrame:
    """Raise :class:`LeakageError` when the corpus holds known test images (unless
    ``allow``); returns the matches either way."""
    if not sources:
        return pd.DataFrame()
    found = leak_matches(hashes, path_of, load_index(sources, progress), max_distance)
    if len(found) and not allow:
        sample = "\n".join(
            f"  {r.frame_path} ~ {r.task}/{r.test_image} ({r.distance} bits)"
            for r in found.head(5).itertuples()
        )
        raise LeakageError(
            f"the pretraining corpus holds {found['row'].nunique()} frame(s) that match "
            f"benchmark test images:\n{sample}\nRemove them with `usjepa data check-leakage "
            "MANIFEST TASK_ROOT ... --out FILTERED.parquet` and train on the filtered "
            "manifest, or set data.allow_test_leakage=true to train on them knowingly."
        )
    return found
