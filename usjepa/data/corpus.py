"""The corpus dataset (frames read from files, unreadable ones skipped) and the
pretraining LightningDataModule; samples and batches are made in :mod:`usjepa.data.batches`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader, Dataset

from usjepa.atomic import atomic_path
from usjepa.data.batches import FrameTransform, MaskCollator
from usjepa.data.frames import (
    FrameTable,
    dataset_shares,
    load_frame_table,
    no_training_rows,
    sampling_weights,
)
from usjepa.data.images import ImageReadError, normalize, pixel_stats, read_gray
from usjepa.data.leakage import guard_corpus, hash_files
from usjepa.data.sampling import EpochSampler, ResumableLoader
from usjepa.masks.base import MaskGenerator
from usjepa.masks.batch import MaskedBatch

log = logging.getLogger(__name__)


class CorpusDataset(Dataset[Any]):
    """Frames of a manifest (a :class:`FrameTable`) read from files, with scan masks.

    Args:
        root: folder the manifest's relative paths start from.
        table: the manifest in columnar form (no per-row Python objects, so DataLoader
            workers share it copy-on-write instead of multiplying memory).
        rows: the table rows this dataset serves.
        transform: crop, resize and normalisation (see :class:`FrameTransform`).
        max_consecutive_bad: unreadable frames (corrupt, truncated, empty, wrong format)
            are replaced by another row (a prime stride away); this many failures for
            one sample stop the run.
    """

    def __init__(
        self,
        root: Path,
        table: FrameTable,
        rows: np.ndarray,
        transform: FrameTransform,
        max_consecutive_bad: int = 32,
    ) -> None:
        self.root, self.table, self.rows, self.transform = root, table, rows, transform
        self.max_consecutive_bad = max_consecutive_bad

    def __len__(self) -> int:
        return len(self.rows)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The raw frame and its scan mask (all-255 when none is listed), both uint8."""
        row = int(self.rows[index])
        image = read_gray(self.root / self.table.frame_path[row], "frame")
        mask_rel = self.table.scan_mask[row]
        if mask_rel:
            mask = read_gray(self.root / mask_rel, "scan mask")
        else:
            mask = np.full_like(image, 255)
        return image, mask

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        """The transformed frame at ``key`` (an index, or ``(index, sample seed)`` from
        :class:`~usjepa.data.sampling.EpochSampler`). An unreadable frame is replaced by
        the next readable row; the rows skipped travel with the sample (``bad_rows``)."""
        index, seed = key if isinstance(key, tuple) else (key, None)
        bad: list[int] = []
        n = len(self.rows)
        stride = 104729 % n or 1  # a large prime step: a damaged folder is not walked through
        for step in range(self.max_consecutive_bad + 1):
            at = (index + step * stride) % n
            try:
                sample: dict[str, Any] = self.transform(*self.load(at), seed=seed)
            except ImageReadError:
                bad.append(int(self.rows[at]))
                continue
            sample["bad_rows"] = bad
            sample["row"] = int(self.rows[at])
            return sample
        raise ImageReadError(
            f"{len(bad)} unreadable frames tried for one sample, first "
            f"{self.root / self.table.frame_path[bad[0]]}; run `usjepa data validate` "
            "on the manifest to list them, then fix or drop them"
        )


class CorpusDataModule(L.LightningDataModule):
    """Pretraining frames from a manifest (files) or from litdata shards, with masks.

    Args:
        manifest: parquet or CSV manifest (see :mod:`usjepa.data.manifest`).
        mask_generator: draws context/target indices (multi-block for JEPA, random for MAE).
        root: folder relative paths start from; defaults to the manifest's folder.
        shards: a folder written by ``usjepa data shard``; training then streams from it
            (litdata splits it across DDP ranks and workers) and validation reads the
            manifest's held-out rows from files.
        img_size: network input side.
        batch_size: images per batch, per device.
        num_workers: loader worker processes, per device.
        persistent_workers: keep the loader workers alive from one epoch to the next
            instead of starting them again every epoch (the order and every crop and mask
            come from the sampler's per-sample seeds, so they do not change). A small
            corpus with short epochs otherwise pays the start-up each epoch.
        pin_memory: page-locked batches, copied to the GPU without a staging copy (only
            used when CUDA is present).
        scan_region: USrc masking (context and targets inside the scan region).
        region_threshold: see :class:`MaskCollator`.
        crop_scale: random-resized-crop area range.
        hflip: probability of a horizontal flip of a training frame and its scan mask
            (SALT: 0.5; I-JEPA: 0).
        val_fraction: share of patients held out for validation loss (when the manifest
            has no ``val`` split).
        sampling: per-dataset sampling: ``size`` (each frame once per epoch),
            ``uniform`` (each dataset equally often) or ``temperature`` (share
            proportional to ``n ** (1 / temperature)``).
        temperature: for ``sampling: temperature``.
        mean: input normalisation on [0, 1] pixels; measured on training frames when
            ``None`` (ultrasound statistics, not ImageNet's).
        std: the same normalisation's standard deviation, measured alike.
        seed: data order, crops and masks.
        test_index: benchmark test images to keep out: task folders (UltraBench layout)
            and/or hash index files. Training refuses a corpus that contains any of them.
        allow_test_leakage: train anyway on a corpus that contains test images.
        synthesize_if_missing: generate the synthetic corpus at ``manifest``'s folder when
            it does not exist (the download-free demo).
        synthetic_images: frames to generate in that case.
        max_bad_fraction: unreadable training frames are skipped, counted per dataset
            (logged as ``data/skipped_frames``, listed in ``skipped_frames.csv`` in the run
            folder); once more than this share of the training frames has turned out
            unreadable, the run stops with the list.
    """

    def __init__(
        self,
        manifest: str,
        mask_generator: MaskGenerator,
        root: str | None = None,
        shards: str | None = None,
        img_size: int = 64,
        batch_size: int = 64,
        num_workers: int = 0,
        persistent_workers: bool = True,
        pin_memory: bool = True,
        scan_region: bool = True,
        region_threshold: float = 0.5,
        crop_scale: tuple[float, float] = (0.3, 1.0),
        hflip: float = 0.0,
        val_fraction: float = 0.05,
        sampling: str = "size",
        temperature: float = 1.0,
        mean: float | None = None,
        std: float | None = None,
        seed: int = 0,
        test_index: list[str] | None = None,
        allow_test_leakage: bool = False,
        synthesize_if_missing: bool = False,
        synthetic_images: int = 2000,
        max_bad_fraction: float = 0.02,
    ) -> None:
        super().__init__()
        if sampling not in ("size", "uniform", "temperature"):
            raise ValueError(f"sampling {sampling!r}: use size, uniform or temperature")
        self.manifest_path = Path(manifest)
        self.root = Path(root) if root else self.manifest_path.parent
        self.shards = shards
        self.collate = MaskCollator(mask_generator, scan_region, region_threshold, normalize=False)
        self.img_size, self.batch_size, self.num_workers = img_size, batch_size, num_workers
        self.persistent_workers, self.pin_memory = persistent_workers, pin_memory
        self.crop_scale, self.val_fraction = crop_scale, val_fraction
        self.hflip = hflip
        self.sampling, self.temperature = sampling, temperature
        self.mean, self.std, self.seed = mean, std, seed
        # measured inside the scan regions in setup() unless given
        self.stats_origin = "fixed" if mean is not None and std is not None else "scan_region"
        self.test_index, self.allow_test_leakage = list(test_index or []), allow_test_leakage
        self.synthesize_if_missing, self.synthetic_images = synthesize_if_missing, synthetic_images
        self.leaks: pd.DataFrame | None = None
        self.max_bad_fraction = max_bad_fraction
        self.bad_rows: set[int] = set()

    def prepare_data(self) -> None:
        """Write the synthetic corpus when asked and the manifest is missing."""
        if self.synthesize_if_missing and not self.manifest_path.exists():
            from usjepa.data.synthetic import generate_corpus

            generate_corpus(self.manifest_path.parent, n_images=self.synthetic_images)

    def setup(self, stage: str | None = None) -> None:
        """Read the manifest, check leakage, and build the datasets and statistics."""
        table = load_frame_table(self.manifest_path)
        self._guard(table)
        is_val = table.val_rows(self.val_fraction)
        train_rows, val_rows = np.flatnonzero(~is_val), np.flatnonzero(is_val)
        if len(table) and not len(train_rows):
            raise ValueError(
                no_training_rows(self.manifest_path, table, "data.init_args.val_fraction: 0")
            )
        grid = self.collate.generator.grid_size
        self.train_transform = FrameTransform(
            self.img_size, self.crop_scale, self.seed, grid, hflip=self.hflip
        )
        self.val_transform = FrameTransform(self.img_size, None, self.seed + 1, grid)
        self.train_set = CorpusDataset(self.root, table, train_rows, self.train_transform)
        self.val_set = CorpusDataset(self.root, table, val_rows, self.val_transform)
        self.weights = sampling_weights(
            table.dataset.codes[train_rows], self.sampling, self.temperature
        )
        if self.mean is None or self.std is None:
            self.mean, self.std = _pixel_stats(self.train_set)
        self.collate.mean, self.collate.std = self.mean, self.std
        self.table = table

    def _guard(self, table: FrameTable) -> None:
        """Refuse (or, when allowed, report) corpus frames that are benchmark test images."""
        if not self.test_index:
            return
        if table.phash is not None:
            hashes = table.phash
        else:
            paths = [self.root / table.frame_path[i] for i in range(len(table))]
            hashes = hash_files(paths, desc="hashing corpus frames for the leakage check")
        self.leaks = guard_corpus(
            hashes,
            table.frame_path.__getitem__,
            self.root,
            self.test_index,
            self.allow_test_leakage,
        )
        if len(self.leaks):
            rank_zero_warn(
                f"training on {self.leaks['row'].nunique()} corpus frames that match "
                "benchmark test images (allow_test_leakage=true)"
            )

    def train_dataloader(self) -> DataLoader[Any]:
        """Training batches: shards or files, sampled by dataset share."""
        if self.shards:
            from litdata import StreamingDataLoader

            from usjepa.data.shards import combined_shards, shard_datasets

            weights = None
            if self.sampling != "size":
                counts = shard_datasets(self.shards)
                share = dataset_shares(
                    np.array(list(counts.values())), self.sampling, self.temperature
                )
                weights = dict(zip(counts, share))
            stream = combined_shards(self.shards, self.train_transform, weights, self.seed)
            loader: DataLoader[Any] = StreamingDataLoader(
                stream,
                batch_size=self.batch_size,
                collate_fn=self.collate,
                drop_last=True,
                **self._loader_options(),
            )
            return loader
        trainer = getattr(self, "trainer", None)
        sampler = EpochSampler(
            len(self.train_set),
            self.seed,
            self.weights,
            num_replicas=trainer.world_size if trainer is not None else 1,
            rank=trainer.global_rank if trainer is not None else 0,
        )
        return ResumableLoader(
            self.train_set,
            self.batch_size,
            sampler=sampler,
            drop_last=True,
            collate_fn=self.collate,
            consumed=self._batches_consumed,
            **self._loader_options(),
        )

    def _loader_options(self) -> dict[str, Any]:
        return {
            "num_workers": self.num_workers,
            "persistent_workers": self.persistent_workers and self.num_workers > 0,
            "pin_memory": self.pin_memory and torch.cuda.is_available(),
        }

    def _batches_consumed(self) -> int:
        """Batches of the current epoch the training loop has finished (for resume)."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0
        return int(trainer.fit_loop.epoch_loop.batch_progress.current.processed)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> MaskedBatch:
        """Normalise uint8 images on the device (a quarter of the bytes cross the bus),
        and count the unreadable frames skipped for this batch (``max_bad_fraction``).
        The DataModule owns the batch: its collator draws the masks, this finishes it."""
        batch = MaskedBatch.of(batch)
        if batch.image.dtype == torch.uint8:
            mean, std = self.mean or 0.0, self.std or 1.0  # set in setup()
            batch.image = normalize(batch.image, mean, std)
        rows, batch.bad_rows = batch.bad_rows, None
        if rows is not None and rows.numel():
            new = set(rows.tolist()) - self.bad_rows
            self.bad_rows |= new
            for row in sorted(new):
                log.warning("skipped unreadable frame %s", self._describe_row(row))
            limit = self.max_bad_fraction * len(self.train_set)
            if len(self.bad_rows) > limit:
                self._write_skipped()
                first = ", ".join(self._describe_row(r) for r in sorted(self.bad_rows)[:3])
                raise ImageReadError(
                    f"{len(self.bad_rows)} of {len(self.train_set)} training frames are "
                    f"unreadable (more than max_bad_fraction {self.max_bad_fraction}), "
                    f"e.g. {first}; all are listed in {self._skipped_csv()}. Fix or drop "
                    "them (`usjepa data validate`), or raise data.init_args.max_bad_fraction"
                )
        batch.skipped_frames = torch.tensor(float(len(self.bad_rows)))
        result: MaskedBatch = batch
        return result

    def _describe_row(self, row: int) -> str:
        return f"{self.root / self.table.frame_path[row]} ({self.table.dataset[row] or '?'})"

    def _skipped_csv(self) -> Path:
        trainer = getattr(self, "trainer", None)
        folder = Path(trainer.default_root_dir) if trainer is not None else self.root
        return folder / "skipped_frames.csv"

    def _write_skipped(self) -> None:
        rows = sorted(self.bad_rows)
        table = pd.DataFrame(
            {
                "frame_path": [self.table.frame_path[r] for r in rows],
                "dataset": [self.table.dataset[r] for r in rows],
            }
        )
        with atomic_path(self._skipped_csv()) as tmp:
            table.to_csv(tmp, index=False)

    def teardown(self, stage: str) -> None:
        """Report the frames skipped as unreadable, per dataset, and list them."""
        if self.bad_rows:
            self._write_skipped()
            per = pd.Series([self.table.dataset[r] for r in self.bad_rows]).value_counts()
            log.warning(
                "skipped %d unreadable frames (%s); listed in %s",
                len(self.bad_rows),
                ", ".join(f"{k}: {v}" for k, v in per.items()),
                self._skipped_csv(),
            )

    def val_dataloader(self) -> DataLoader[Any]:
        """Validation batches from the held-out patients."""
        return DataLoader(
            self.val_set,
            self.batch_size,
            shuffle=False,
            collate_fn=self.collate,
            **self._loader_options(),
        )


def _pixel_stats(dataset: CorpusDataset, n: int = 256) -> tuple[float, float]:
    """Mean and std of [0, 1] pixels inside the scan region over up to ``n`` frames."""
    picks = np.linspace(0, len(dataset) - 1, min(n, len(dataset))).astype(int)
    frames = []
    for i in picks:
        try:
            frames.append(dataset.load(int(i)))
        except ImageReadError:
            continue  # counted when training reaches it
    return pixel_stats((f[0] for f in frames), (f[1] for f in frames))
