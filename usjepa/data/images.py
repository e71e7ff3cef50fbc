"""Image reading and the geometric transforms shared by datasets."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


class ImageReadError(OSError):
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
