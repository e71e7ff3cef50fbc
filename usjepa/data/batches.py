"""Samples and batches of the corpus: each frame's crop, resize and scan cover
(:class:`FrameTransform`, shared by the file and shard datasets) and the batch's masks
(:class:`MaskCollator`, run in DataLoader workers)."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import get_worker_info

from usjepa.data.images import normalize, random_resized_box, resize_square
from usjepa.data.scan_region import patch_cover
from usjepa.masks.base import MaskGenerator
from usjepa.masks.batch import MaskedBatch


class FrameTransform:
    """Random resized crop (or plain resize) of a frame and its scan mask, and the
    per-sample mask seed. Images stay uint8; :class:`MaskCollator` (or the DataModule,
    on the device) normalises whole batches at once, which is cheaper than per sample.

    With ``grid_size``, the scan mask is returned as ``scan_cover`` ``[G, G]``: the
    share of each patch inside the scan region (what USrc masking needs), computed by
    area interpolation of the cropped mask instead of a full-resolution mask.

    Shared by the file and shard datasets so both give identical samples. Training
    samples come with a seed of their own (:class:`~usjepa.data.sampling.EpochSampler`,
    or the shard item), and the draws use it alone, so they do not depend on workers or
    on an interruption. Without one (validation), draws come from one stream per process:
    ``seed`` in the main process, the seed PyTorch gives a DataLoader worker otherwise.
    """

    def __init__(
        self,
        img_size: int,
        crop_scale: tuple[float, float] | None,
        seed: int = 0,
        grid_size: int | None = None,
        hflip: float = 0.0,
    ):
        self.img_size, self.crop_scale, self.seed = img_size, crop_scale, seed
        self.grid_size, self.hflip = grid_size, hflip
        self._rng: np.random.Generator | None = None
        self._key: int | None = None

    def rng(self) -> np.random.Generator:
        """This worker's generator (seeded from the transform's seed and the worker id)."""
        info = get_worker_info()
        key = info.seed if info is not None else self.seed
        if self._rng is None or self._key != key:
            self._rng, self._key = np.random.default_rng(key), key
        return self._rng

    def __call__(
        self, image: np.ndarray, mask: np.ndarray, seed: int | None = None
    ) -> dict[str, Tensor | int]:
        """Crop and resize one frame and its scan mask into a sample dict; with ``seed``
        (the sample's own, from :class:`~usjepa.data.sampling.EpochSampler`) the crop and
        mask draws come from it alone, else from this worker's stream."""
        rng = self.rng() if seed is None else np.random.default_rng(seed)
        if self.crop_scale is not None:
            height, width = image.shape[:2]
            top, left, h, w = random_resized_box(height, width, self.crop_scale, (0.75, 4 / 3), rng)
            box = (slice(top, top + h), slice(left, left + w))
            image, mask = image[box], mask[box]
        if self.hflip > 0 and rng.random() < self.hflip:  # image and scan mask together
            image, mask = np.ascontiguousarray(image[:, ::-1]), np.ascontiguousarray(mask[:, ::-1])
        size = (self.img_size, self.img_size)
        image = resize_square(image, self.img_size)
        sample: dict[str, Tensor | int] = {
            "image": torch.from_numpy(image)[None],
            "mask_seed": int(rng.integers(2**62)),
        }
        if self.grid_size:
            sample["scan_cover"] = torch.from_numpy(patch_cover(mask, self.grid_size))
        else:
            mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
            sample["scan_mask"] = torch.from_numpy(mask > 127)[None]
        return sample


class MaskCollator:
    """Stacks and normalises samples and draws the batch's masks on the CPU (in
    DataLoader workers).

    Args:
        generator: the mask generator.
        scan_region: condition masks on the scan region (USrc); otherwise plain masks.
        region_threshold: share of a patch's pixels that must be scan region for the
            patch to count as inside.
        mean: input normalisation of [0, 1] pixels: the mean (the DataModule sets it).
        std: the same normalisation's standard deviation.
        normalize: normalise here; ``False`` leaves ``image`` uint8 for normalisation on
            the device (:class:`CorpusDataModule` does that after the batch transfer,
            which also moves a quarter of the bytes).
    """

    def __init__(
        self,
        generator: MaskGenerator,
        scan_region: bool = True,
        region_threshold: float = 0.5,
        mean: float = 0.0,
        std: float = 1.0,
        normalize: bool = True,
    ) -> None:
        self.generator, self.scan_region = generator, scan_region
        self.region_threshold = region_threshold
        self.mean, self.std, self.normalize = mean, std, normalize

    def __call__(self, samples: list[dict[str, Any]]) -> MaskedBatch:
        """Stack the samples and draw one batch of masks."""
        images = torch.stack([s["image"] for s in samples])
        if self.normalize:
            images = normalize(images, self.mean, self.std)
        g = self.generator.grid_size
        if images.shape[-1] % g:
            raise ValueError(
                f"image size {images.shape[-1]} is not a multiple of the mask "
                f"grid {g}; set mask_generator.grid_size = img_size // patch_size"
            )
        valid = None
        if self.scan_region:
            if "scan_cover" in samples[0]:
                cover = torch.stack([s["scan_cover"] for s in samples])
            else:  # full-size boolean masks
                cover = torch.stack(
                    [
                        torch.from_numpy(
                            patch_cover(s["scan_mask"][0].numpy().astype(np.uint8) * 255, g)
                        )
                        for s in samples
                    ]
                )
            if cover.shape[-1] != g:
                raise ValueError(f"scan cover grid {cover.shape[-1]} != mask grid {g}")
            valid = cover >= self.region_threshold
        gen = torch.Generator().manual_seed(samples[0]["mask_seed"])
        context, targets = self.generator(len(samples), gen, valid)
        bad = [row for s in samples for row in s.get("bad_rows", ())]
        return MaskedBatch(
            image=images,
            context=context,
            targets=targets,
            bad_rows=torch.tensor(bad, dtype=torch.long),
            # manifest rows of the batch (file datasets): which frames a rank trained on
            rows=torch.tensor([int(s.get("row", -1)) for s in samples], dtype=torch.long),
        )
