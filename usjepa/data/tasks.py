"""Benchmark tasks in the UltraBench layout and their LightningDataModule.

A task folder holds ``images/``, ``masks/scan/`` and ``train_val.json`` / ``test.json``:
lists of records with at least ``image`` and ``label`` (and usually ``scan_mask``).
Images of one patient must not straddle train and validation, so validation is carved
from train_val by group: ``patient`` when records have it, else ``source`` (POCUS groups
frames by video), else each image is its own group (AUL has one image per patient).

The ``ultrabench`` package's own output (``train.json``, ``validation.json``,
``test.json``) is read too: train and validation form train_val, and the official
validation split is used for head selection instead of a carved one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import lightning as L
import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from usjepa.data.images import normalize, pixel_stats, read_gray, resize_square
from usjepa.errors import UsjepaError
from usjepa.models.input_spec import letterbox_size

GROUP_FIELDS = ("patient", "source")
SPLIT_FILES = {"train_val": "train_val.json", "test": "test.json"}


class TaskError(UsjepaError, ValueError):
    """A task folder or split file that cannot be read as a benchmark task."""


#: the ultrabench package's split files, read as train_val = train + validation
OFFICIAL_SPLITS = ("train.json", "validation.json")


def _has_official_splits(root: Path) -> bool:
    return all((root / name).exists() for name in OFFICIAL_SPLITS)


def _records(path: Path) -> pd.DataFrame:
    try:
        return pd.DataFrame(json.loads(path.read_text()))
    except (json.JSONDecodeError, ValueError) as err:
        raise TaskError(f"{path} is not a JSON list of records: {err}") from err


def read_split(root: Path, split: str) -> pd.DataFrame:
    """Records of one split file with a ``group`` column added (and, for UltraBench's
    own train/validation files, an ``official_val`` column)."""
    path = root / SPLIT_FILES[split]
    if split == "train_val" and not path.exists() and _has_official_splits(root):
        train, val = (_records(root / name) for name in OFFICIAL_SPLITS)
        table = pd.concat([train, val], ignore_index=True)
        table["official_val"] = np.arange(len(table)) >= len(train)
        path = root / OFFICIAL_SPLITS[0]
    elif not path.exists():
        raise TaskError(
            f"{path} not found; a task folder needs train_val.json and test.json, or "
            "UltraBench's train.json, validation.json and test.json; make one with "
            "`usjepa data build-task` or `usjepa data synth`"
        )
    else:
        table = _records(path)
    for column in ("image", "label"):
        if column not in table:
            raise TaskError(f"{path}: records lack the {column!r} field")
    field = next((f for f in GROUP_FIELDS if f in table), None)
    table["group"] = table[field].astype(str) if field else table["image"].astype(str)
    return table


def class_names_from_records(table: pd.DataFrame) -> list[str] | None:
    """Class names from a text field that maps one to one onto ``label`` (UltraBench's
    ``pathology`` or ``class``), ordered by label; ``None`` when no field does."""
    for field in ("pathology", "class", "label_name", "diagnosis"):
        if field not in table:
            continue
        pairs = table[[field, "label"]].drop_duplicates()
        if pairs[field].is_unique and pairs["label"].is_unique:
            by_label = dict(zip(pairs["label"].astype(int), pairs[field].astype(str)))
            if sorted(by_label) == list(range(len(by_label))):
                return [by_label[i] for i in range(len(by_label))]
    return None


def grouped_split(groups: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of validation rows: whole groups, about ``fraction`` of the rows.

    Groups are shuffled with ``seed`` and taken per majority label in turn so every
    class reaches validation when it can.
    """
    rng = np.random.default_rng(seed)
    uniq, inverse = np.unique(groups, return_inverse=True)
    majority = np.array([np.bincount(labels[inverse == g]).argmax() for g in range(len(uniq))])
    chosen = np.zeros(len(uniq), bool)
    for label in np.unique(majority):
        members = rng.permutation(np.flatnonzero(majority == label))
        take = max(1, round(fraction * len(members))) if len(members) > 1 else 0
        chosen[members[:take]] = True
    return chosen[inverse]


def square(image: np.ndarray, size: int) -> np.ndarray:
    """Stretch to ``size`` x ``size``, exactly as training frames are (area
    interpolation when shrinking, linear when enlarging)."""
    return resize_square(image, size)


def letterbox(image: np.ndarray, size: int) -> np.ndarray:
    """Longer side to ``size`` keeping the aspect ratio, black padding bottom and right."""
    h, w = image.shape[:2]
    new_h, new_w = letterbox_size(h, w, size)
    inter = cv2.INTER_AREA if new_h * new_w < h * w else cv2.INTER_LINEAR
    out = np.zeros((size, size), image.dtype)
    out[:new_h, :new_w] = cv2.resize(image, (new_w, new_h), interpolation=inter)
    return out


class TaskDataset(Dataset[Any]):
    """Task images resized to a square input (stretched, or letterboxed), normalised,
    with labels (no augmentation)."""

    def __init__(
        self,
        root: Path,
        table: pd.DataFrame,
        img_size: int,
        mean: float,
        std: float,
        corruption: tuple[str, int] | None = None,
        letterbox: bool = False,
    ) -> None:
        self.root = root
        self.images = table["image"].to_numpy(dtype=str)
        self.labels = table["label"].to_numpy(dtype=np.int64)
        masks = table["scan_mask"] if "scan_mask" in table else pd.Series([""] * len(table))
        self.masks = masks.fillna("").to_numpy(dtype=str)
        self.img_size, self.mean, self.std = img_size, mean, std
        self.corruption, self.letterbox = corruption, letterbox

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        image = read_gray(self.root / self.images[index], "task image")
        if self.corruption is not None:  # inside the scan region, seeded per image
            from usjepa.data.corruptions import corrupt
            from usjepa.data.scan_region import detect_scan_region

            rel = self.masks[index]
            mask = read_gray(self.root / rel, "scan mask") if rel else detect_scan_region(image)
            image = corrupt(image, mask, *self.corruption, seed=index)
        image = letterbox(image, self.img_size) if self.letterbox else square(image, self.img_size)
        x = normalize(torch.from_numpy(image)[None], self.mean, self.std)
        return {"image": x, "label": torch.tensor(self.labels[index])}


class ProbeDataModule(L.LightningDataModule):
    """One benchmark task for frozen-encoder evaluation.

    Args:
        root: the task folder (UltraBench layout).
        img_size: network input side.
        batch_size: images per batch in feature extraction.
        num_workers: loader worker processes in feature extraction.
        mean: input normalisation on [0, 1] pixels; the train_val images' own
            statistics when ``None``.
        std: the same normalisation's standard deviation, measured alike.
        val_fraction: share of train_val groups held out for head selection.
        synthesize_if_missing: write the synthetic lesion task at ``root`` when the folder
            has no split files (the download-free demo).
    """

    def __init__(
        self,
        root: str,
        img_size: int = 64,
        batch_size: int = 128,
        num_workers: int = 0,
        mean: float | None = None,
        std: float | None = None,
        val_fraction: float = 0.2,
        synthesize_if_missing: bool = False,
    ) -> None:
        super().__init__()
        self.root = Path(root)
        self.img_size, self.batch_size, self.num_workers = img_size, batch_size, num_workers
        self.mean, self.std, self.val_fraction = mean, std, val_fraction
        self.synthesize_if_missing = synthesize_if_missing
        self.tables: dict[str, pd.DataFrame] = {}

    def prepare_data(self) -> None:
        """Write the synthetic task when asked and the folder has none."""
        if self.synthesize_if_missing and not (self.root / SPLIT_FILES["test"]).exists():
            from usjepa.data.synthetic import generate_task

            generate_task(self.root)

    @property
    def task_name(self) -> str:
        """The task's name: its folder's name."""
        return self.root.name

    def exists(self) -> bool:
        """Whether the folder holds a task's split files (or will be synthesised)."""
        return self.synthesize_if_missing or (
            (self.root / SPLIT_FILES["test"]).exists()
            and ((self.root / SPLIT_FILES["train_val"]).exists() or _has_official_splits(self.root))
        )

    def setup(self, stage: str | None = None) -> None:
        """Read and check the split files and the class names."""
        if self.tables:
            return
        self.prepare_data()
        self.tables = {split: read_split(self.root, split) for split in SPLIT_FILES}
        labels = np.concatenate([t["label"].to_numpy() for t in self.tables.values()])
        if labels.min() < 0:
            raise TaskError(f"{self.root}: labels must be 0..C-1, found {labels.min()}")
        names_file = self.root / "classes.json"
        names = json.loads(names_file.read_text()) if names_file.exists() else []
        if not names:
            names = class_names_from_records(pd.concat(self.tables.values())) or []
        self.num_classes = max(len(names), int(labels.max()) + 1)
        if names and len(names) < self.num_classes:
            split, table = next(
                (k, t) for k, t in self.tables.items() if t["label"].max() >= len(names)
            )
            row = int(np.argmax(table["label"].to_numpy() >= len(names)))
            raise TaskError(
                f"{self.root / SPLIT_FILES[split]}: record {row} has label "
                f"{table['label'].iloc[row]}, but {names_file} names {len(names)} classes "
                f"(0..{len(names) - 1}); fix the label or add the class to classes.json"
            )
        self.class_names = names or [str(c) for c in range(self.num_classes)]
        if self.mean is None or self.std is None:
            self.mean, self.std = self._stats()

    def _stats(self, n: int = 128) -> tuple[float, float]:
        images = self.tables["train_val"]["image"].to_numpy(dtype=str)
        picks = np.linspace(0, len(images) - 1, min(n, len(images))).astype(int)
        return pixel_stats(read_gray(self.root / images[i]) for i in picks)

    def labels(self, split: str) -> np.ndarray:
        """Integer labels of ``split``."""
        result: np.ndarray = self.tables[split]["label"].to_numpy(dtype=np.int64)
        return result

    def groups(self, split: str) -> np.ndarray:
        """Patient (or image) groups of ``split``, for grouped validation splits."""
        result: np.ndarray = self.tables[split]["group"].to_numpy(dtype=str)
        return result

    def val_mask(self, seed: int) -> np.ndarray:
        """Validation rows of train_val for one seed (grouped, class-aware); UltraBench's
        official validation split, the same for every seed, when the folder has one."""
        table = self.tables["train_val"]
        if "official_val" in table:
            result: np.ndarray = table["official_val"].to_numpy(dtype=bool)
            return result
        return grouped_split(
            self.groups("train_val"), self.labels("train_val"), self.val_fraction, seed
        )

    def dataloader(
        self,
        split: str,
        corruption: tuple[str, int] | None = None,
        img_size: int | None = None,
        letterbox: bool = False,
        stats: tuple[float, float] | None = None,
    ) -> DataLoader[Any]:
        """Deterministic loader over ``train_val`` or ``test`` for feature extraction,
        optionally with a ``(corruption, severity)`` applied inside the scan region, at
        another input size, letterboxed instead of stretched, or standardised with
        another ``(mean, std)`` (an encoder's own, from its input contract)."""
        assert self.mean is not None and self.std is not None
        size = img_size or self.img_size
        mean, std = stats if stats is not None else (self.mean, self.std)
        table = self.tables[split]
        ds = TaskDataset(self.root, table, size, mean, std, corruption, letterbox)
        return DataLoader(ds, self.batch_size, shuffle=False, num_workers=self.num_workers)
