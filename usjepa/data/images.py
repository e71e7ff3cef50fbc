"""Image reading and the geometric transforms shared by datasets."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import repeat
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor

from usjepa.errors import UsjepaError


class ImageReadError(UsjepaError, OSError):
    """An image or mask file that is missing or cannot be decoded."""


def read_gray(path: str | Path, what: str = "image") -> np.ndarray:
    """Read a file as ``[H, W]`` uint8 grayscale, or raise naming the file and the fix."""
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        hint = (
            "the file does not exist; check the manifest's root folder"
            if not Path(path).exists()
            else "the file exists but cannot be decoded (corrupt or not an image); "
            "re-extract it or drop its row from the manifest"
        )
        raise ImageReadError(f"cannot read {what} {path}: {hint}")
    return image


def random_resized_box(
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    rng: np.random.Generator,
) -> tuple[int, int, int, int]:
    """A crop box ``(top, left, h, w)`` covering ``scale`` of the area at aspect ``ratio``
    (the RandomResizedCrop rule; falls back to the full image after 10 failed draws)."""
    area = height * width
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
        w = int(round(np.sqrt(target * aspect)))
        h = int(round(np.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    return 0, 0, height, width


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """Stretch to ``size`` x ``size``: area interpolation when shrinking, linear when
    enlarging. The one resize of training frames and probe images alike (the ``square``
    of :class:`usjepa.models.input_spec.InputSpec`)."""
    shrink = image.shape[0] * image.shape[1] > size * size
    return cv2.resize(
        image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    )


def pixel_stats(
    images: Iterable[np.ndarray], masks: Iterable[np.ndarray] | None = None
) -> tuple[float, float]:
    """Mean and std of uint8 pixels scaled to [0, 1], over all the ``images`` (inside
    their scan ``masks`` when given, mask > 127); the std is at least 1e-3. The one
    input-statistics rule of corpora and tasks."""
    values = []
    for image, mask in zip(images, masks if masks is not None else repeat(None)):
        part = image if mask is None else image[mask > 127]
        values.append(part.ravel().astype(np.float32) / 255.0)
    pixels = np.concatenate(values) if values else np.array([0.5], np.float32)
    return float(pixels.mean()), float(max(pixels.std(), 1e-3))


def normalize(images: Tensor, mean: float, std: float) -> Tensor:
    """uint8 images to ``(x / 255 - mean) / std`` in float32, in one fused pass. The one
    normalisation of training batches and probe images alike, so an encoder sees the
    same numbers bit for bit in both."""
    out = images.to(torch.float32)
    return out.mul_(1.0 / (255.0 * std)).add_(-mean / std)
