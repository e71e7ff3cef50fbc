"""Leakage guard: perceptual hashes of benchmark test images and their near duplicates.

A 64-bit DCT perceptual hash (the low 8x8 frequencies of a 32x32 thumbnail, thresholded
at their median) survives resizing, re-encoding and mild intensity changes, so a test
image re-extracted into a pretraining corpus at another size still matches. Candidate
pairs within ``max_distance`` bits are found by exact matches on ``max_distance + 1``
bands of the hash (by the pigeonhole principle a pair within the
distance agrees on at least one band), so the search scales to millions of frames;
a candidate counts as a duplicate when the two 32x32 thumbnails also correlate.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from usjepa.data.images import read_gray
from usjepa.errors import UsjepaError


class LeakageError(UsjepaError, RuntimeError):
    """A pretraining corpus that contains benchmark test images."""


def phash(image: np.ndarray) -> int:
    """64-bit perceptual hash of a grayscale uint8 image, as a signed int64 value."""
    thumb = cv2.resize(image, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(thumb)[:8, :8].flatten()
    bits = low > np.median(low[1:])
    value = np.packbits(bits).view(">u8")[0]
    return int(np.int64(np.uint64(value).view(np.int64)))


def thumbnail(image: np.ndarray) -> bytes:
    """A 32x32 uint8 thumbnail, the second-stage check of a hash match."""
    return cv2.resize(image, (32, 32), interpolation=cv2.INTER_AREA).tobytes()


def thumb_correlation(a: bytes, b: bytes) -> float:
    """Pearson correlation of two thumbnails: about 1.0 for a resized or re-encoded copy,
    lower for another frame of the same patient (0.97 at most on synthetic clips)."""
    x = np.frombuffer(a, np.uint8).astype(np.float64)
    y = np.frombuffer(b, np.uint8).astype(np.float64)
    x, y = x - x.mean(), y - y.mean()
    denom = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denom) if denom > 0 else float(np.array_equal(a, b))


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
    stamp = f"v2:{split.stat().st_size}:{split.stat().st_mtime_ns}"  # v2: with thumbnails
    cache = root / "test_hashes.parquet"
    if cache.exists():
        cached = pd.read_parquet(cache)
        if len(cached) and str(cached["stamp"].iloc[0]) == stamp:
            return cached.drop(columns="stamp")
    records = json.loads(split.read_text())
    images = [str(r["image"]) for r in records]
    hashes, thumbs = [], []
    for rel in tqdm(
        images, desc=f"hashing {root.name} test images", disable=not progress, leave=False
    ):
        image = read_gray(root / rel, "test image")
        hashes.append(phash(image))
        thumbs.append(thumbnail(image))
    table = pd.DataFrame(
        {"task": root.name, "image": images, "phash": np.array(hashes, np.int64), "thumb": thumbs}
    )
    table.assign(stamp=stamp).to_parquet(cache, index=False)
    return table


def load_index(sources: Sequence[str | Path], progress: bool = True) -> pd.DataFrame:
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
        result: np.ndarray = table["phash"].to_numpy(np.int64)
        return result
    paths = [root / p for p in table["frame_path"].astype(str)]
    return hash_files(paths, progress, desc="hashing corpus frames")


def leak_matches(
    hashes: np.ndarray,
    path_of: Callable[[int], str],
    root: Path,
    index: pd.DataFrame,
    max_distance: int = 6,
    min_correlation: float = 0.98,
) -> pd.DataFrame:
    """Corpus rows that duplicate a test image: one row per match with the frame path
    (``path_of(row)``, relative to ``root``), task, test image, hash distance and
    thumbnail correlation.

    Stage one finds hash pairs within ``max_distance`` bits; stage two keeps a pair when
    the 32x32 thumbnails correlate at ``min_correlation`` or more (an index without
    thumbnails, such as a CSV of hashes, skips stage two). Ultrasound frames share their
    black surround and fan outline, so hashes of different frames can be close; the
    thumbnails tell copies (correlation ~1.0) from neighbours.
    """
    matches = find_matches(hashes, index["phash"].to_numpy(np.int64), max_distance)
    rows = matches["row"].to_numpy()
    cols = matches["index_row"].to_numpy()
    paths = [path_of(int(r)) for r in rows]
    corr = np.ones(len(rows))
    if "thumb" in index and len(rows):
        thumbs: dict[int, bytes] = {}
        for k, (r, c) in enumerate(zip(rows, cols)):
            if r not in thumbs:
                thumbs[r] = thumbnail(read_gray(root / paths[k], "corpus frame"))
            corr[k] = thumb_correlation(thumbs[r], index["thumb"].iloc[c])
    keep = corr >= min_correlation
    distance = matches["distance"].to_numpy()[keep]
    return pd.DataFrame(
        {
            "row": rows[keep],
            "frame_path": np.array(paths, dtype=object)[keep] if len(paths) else [],
            "task": index["task"].to_numpy()[cols[keep]],
            "test_image": index["image"].to_numpy()[cols[keep]],
            "distance": distance,
            "correlation": corr[keep].round(4),
            "kind": np.where(distance == 0, "exact", "near"),
        }
    )


def check_leakage(
    table: pd.DataFrame,
    root: Path,
    index: pd.DataFrame,
    max_distance: int = 6,
    progress: bool = True,
    min_correlation: float = 0.98,
) -> pd.DataFrame:
    """Rows of a manifest table that duplicate a test image (see :func:`leak_matches`)."""
    hashes = manifest_hashes(table, root, progress)
    paths = table["frame_path"].astype(str).to_numpy()
    return leak_matches(hashes, lambda r: str(paths[r]), root, index, max_distance, min_correlation)


def guard_corpus(
    hashes: np.ndarray,
    path_of: Callable[[int], str],
    root: Path,
    sources: Sequence[str | Path],
    allow: bool = False,
    max_distance: int = 6,
    progress: bool = True,
) -> pd.DataFrame:
    """Raise :class:`LeakageError` when the corpus holds known test images (unless
    ``allow``); returns the matches either way."""
    if not sources:
        return pd.DataFrame()
    found = leak_matches(hashes, path_of, root, load_index(sources, progress), max_distance)
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
