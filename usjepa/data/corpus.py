"""Corpus dataset, mask collator and the pretraining LightningDataModule."""

from __future__ import annotations

import zlib
from pathlib import Path

import cv2
import lightning as L
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, get_worker_info

from usjepa.data.images import random_resized_box, read_gray
from usjepa.data.manifest import read_manifest
from usjepa.masks.base import MaskGenerator


class CorpusDataset(Dataset):
    """Frames listed in a manifest, with their scan masks.

    Paths are held in NumPy string arrays (no per-row Python objects), so DataLoader
    workers share them copy-on-write instead of multiplying memory.

    Args:
        root: folder the manifest's relative paths start from.
        frames, masks: relative paths; ``masks`` may hold empty strings (no mask known:
            the whole frame counts as scan region).
        img_size: output side in pixels.
        crop_scale: random-resized-crop area range (I-JEPA's only augmentation);
            ``None`` resizes the whole frame (evaluation).
        seed: seeds the crop and mask draws. In the main process they follow one stream
            from ``seed``; in DataLoader workers each worker's stream starts from the seed
            PyTorch gives it (drawn per epoch from the loader's generator), so draws differ
            between workers and epochs yet repeat for the same seeds.
    """

    def __init__(
        self,
        root: Path,
        frames: np.ndarray,
        masks: np.ndarray,
        img_size: int,
        crop_scale: tuple[float, float] | None,
        seed: int = 0,
    ) -> None:
        self.root, self.frames, self.masks = root, frames, masks
        self.img_size, self.crop_scale, self.seed = img_size, crop_scale, seed
        self.mean, self.std = 0.0, 1.0
        self._gen: torch.Generator | None = None
        self._gen_key: int | None = None

    def __len__(self) -> int:
        return len(self.frames)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The raw frame and its scan mask (all-255 when none is listed), both uint8."""
        image = read_gray(self.root / str(self.frames[index]), "frame")
        mask_rel = str(self.masks[index])
        if mask_rel:
            mask = read_gray(self.root / mask_rel, "scan mask")
        else:
            mask = np.full_like(image, 255)
        return image, mask

    def _rng(self) -> np.random.Generator:
        info = get_worker_info()
        key = info.seed if info is not None else self.seed
        if self._gen is None or self._gen_key != key:
            self._gen, self._gen_key = torch.Generator().manual_seed(key), key
        return np.random.default_rng(int(torch.randint(2**62, (1,), generator=self._gen)))

    def __getitem__(self, index: int) -> dict[str, Tensor | int]:
        rng = self._rng()
        image, mask = self.load(index)
        if self.crop_scale is not None:
            height, width = image.shape[:2]
            top, left, h, w = random_resized_box(height, width, self.crop_scale, (0.75, 4 / 3), rng)
            box = (slice(top, top + h), slice(left, left + w))
            image, mask = image[box], mask[box]
        size = (self.img_size, self.img_size)
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
        x = (torch.from_numpy(image).float()[None] / 255.0 - self.mean) / self.std
        return {
            "image": x,
            "scan_mask": torch.from_numpy(mask > 127)[None],
            "mask_seed": int(rng.integers(2**62)),
        }


class MaskCollator:
    """Stacks samples and draws the batch's masks on the CPU (in DataLoader workers).

    Args:
        generator: the mask generator.
        scan_region: condition masks on the scan region (USrc); otherwise plain masks.
        region_threshold: share of a patch's pixels that must be scan region for the
            patch to count as inside.
    """

    def __init__(
        self, generator: MaskGenerator, scan_region: bool = True, region_threshold: float = 0.5
    ) -> None:
        self.generator, self.scan_region = generator, scan_region
        self.region_threshold = region_threshold

    def __call__(self, samples: list[dict]) -> dict[str, Tensor]:
        images = torch.stack([s["image"] for s in samples])
        masks = torch.stack([s["scan_mask"] for s in samples])
        g = self.generator.grid_size
        if images.shape[-1] % g:
            raise ValueError(
                f"image size {images.shape[-1]} is not a multiple of the mask "
                f"grid {g}; set mask_generator.grid_size = img_size // patch_size"
            )
        valid = None
        if self.scan_region:
            cover = F.adaptive_avg_pool2d(masks.float(), g)[:, 0]
            valid = cover >= self.region_threshold
        gen = torch.Generator().manual_seed(samples[0]["mask_seed"])
        context, targets = self.generator(len(samples), gen, valid)
        return {"image": images, "context": context, "targets": targets}


class CorpusDataModule(L.LightningDataModule):
    """Pretraining frames from a manifest, with masks for JEPA or MAE.

    Args:
        manifest: parquet or CSV manifest (see :mod:`usjepa.data.manifest`).
        mask_generator: draws context/target indices (multi-block for JEPA, random for MAE).
        root: folder relative paths start from; defaults to the manifest's folder.
        img_size: network input side.
        batch_size, num_workers: loader settings (per device).
        scan_region: USrc masking (context and targets inside the scan region).
        region_threshold: see :class:`MaskCollator`.
        crop_scale: random-resized-crop area range.
        val_fraction: share of patients held out for validation loss (when the manifest
            has no ``val`` split).
        mean, std: input normalisation on [0, 1] pixels; measured on training frames when
            ``None`` (ultrasound statistics, not ImageNet's).
        seed: data order, crops and masks.
        synthesize_if_missing: generate the synthetic corpus at ``manifest``'s folder when
            it does not exist (the download-free demo).
        synthetic_images: frames to generate in that case.
    """

    def __init__(
        self,
        manifest: str,
        mask_generator: MaskGenerator,
        root: str | None = None,
        img_size: int = 64,
        batch_size: int = 64,
        num_workers: int = 0,
        scan_region: bool = True,
        region_threshold: float = 0.5,
        crop_scale: tuple[float, float] = (0.3, 1.0),
        val_fraction: float = 0.05,
        mean: float | None = None,
        std: float | None = None,
        seed: int = 0,
        synthesize_if_missing: bool = False,
        synthetic_images: int = 2000,
    ) -> None:
        super().__init__()
        self.manifest_path = Path(manifest)
        self.root = Path(root) if root else self.manifest_path.parent
        self.collate = MaskCollator(mask_generator, scan_region, region_threshold)
        self.img_size, self.batch_size, self.num_workers = img_size, batch_size, num_workers
        self.crop_scale, self.val_fraction = crop_scale, val_fraction
        self.mean, self.std, self.seed = mean, std, seed
        self.synthesize_if_missing, self.synthetic_images = synthesize_if_missing, synthetic_images

    def prepare_data(self) -> None:
        if self.synthesize_if_missing and not self.manifest_path.exists():
            from usjepa.data.synthetic import generate_corpus

            generate_corpus(self.manifest_path.parent, n_images=self.synthetic_images)

    def setup(self, stage: str | None = None) -> None:
        table = read_manifest(self.manifest_path)
        is_val = _val_rows(table, self.val_fraction)
        frames = table["frame_path"].to_numpy(dtype=str)
        masks = table["scan_mask"].fillna("").to_numpy(dtype=str)
        self.train_set = CorpusDataset(
            self.root, frames[~is_val], masks[~is_val], self.img_size, self.crop_scale, self.seed
        )
        self.val_set = CorpusDataset(
            self.root, frames[is_val], masks[is_val], self.img_size, None, self.seed + 1
        )
        if self.mean is None or self.std is None:
            self.mean, self.std = _pixel_stats(self.train_set)
        for ds in (self.train_set, self.val_set):
            ds.mean, ds.std = self.mean, self.std

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            self.train_set,
            self.batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=self.num_workers,
            collate_fn=self.collate,
            generator=torch.Generator().manual_seed(self.seed),
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(
            self.val_set,
            self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=self.collate,
        )


def _val_rows(table: pd.DataFrame, fraction: float) -> np.ndarray:
    """Validation rows: the manifest's ``val`` split, else a stable hash of the patient."""
    if "split" in table and (table["split"] == "val").any():
        return (table["split"] == "val").to_numpy()
    groups = table["patient_id"] if "patient_id" in table else table["frame_path"]
    bucket = groups.astype(str).map(lambda s: zlib.crc32(s.encode()) % 10_000)
    return (bucket < fraction * 10_000).to_numpy()


def _pixel_stats(dataset: CorpusDataset, n: int = 256) -> tuple[float, float]:
    """Mean and std of [0, 1] pixels inside the scan region over up to ``n`` frames."""
    picks = np.linspace(0, len(dataset) - 1, min(n, len(dataset))).astype(int)
    values = []
    for i in picks:
        image, mask = dataset.load(int(i))
        values.append(image[mask > 127].astype(np.float32) / 255.0)
    pixels = np.concatenate(values) if values else np.array([0.5], np.float32)
    return float(pixels.mean()), float(max(pixels.std(), 1e-3))
