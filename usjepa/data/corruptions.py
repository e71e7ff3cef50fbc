"""Ultrasound corruptions at 5 severities, applied inside the scan region only.

Each corruption maps a grayscale frame in [0, 1] and its scan mask to a corrupted frame;
:func:`corrupt` then keeps the background (outside the scan region) as it was, so black
stays black. The acoustic ones come from ``usaugment`` (DepthAttenuation, GaussianShadow,
HazeArtifact, SpeckleReduction), with each parameter range quantised to 5 levels; the
rest are written here (multiplicative speckle at the MedMNIST-C levels, Gaussian noise,
lateral motion blur, gain up and down, contrast down, JPEG at quality 50/30/15/10/7).
"""

from __future__ import annotations

import random
from collections.abc import Callable

import cv2
import numpy as np

SEVERITIES = (1, 2, 3, 4, 5)
Corruption = Callable[[np.ndarray, np.ndarray, int, np.random.Generator], np.ndarray]


def _usaugment(name: str, **levels: tuple[float, ...]) -> Corruption:
    """A usaugment transform with each parameter fixed to its level for the severity."""

    def apply(
        x: np.ndarray, mask: np.ndarray, severity: int, rng: np.random.Generator
    ) -> np.ndarray:
        import usaugment.albumentations as usa

        params = {k: v[severity - 1] for k, v in levels.items()}
        transform = getattr(usa, name)(p=1.0, **params)
        seed = int(rng.integers(2**31))
        random.seed(seed)  # usaugment draws positions from the global generators
        np.random.seed(seed)
        result: np.ndarray = transform(
            image=x.astype(np.float32), scan_mask=mask.astype(np.float32)
        )["image"]
        return result

    return apply


def _speckle(
    x: np.ndarray, mask: np.ndarray, severity: int, rng: np.random.Generator
) -> np.ndarray:
    sigma = (0.10, 0.15, 0.20, 0.25, 0.30)[severity - 1]
    return x + x * rng.normal(0.0, sigma, x.shape)


def _gaussian_noise(
    x: np.ndarray, mask: np.ndarray, severity: int, rng: np.random.Generator
) -> np.ndarray:
    return x + rng.normal(0.0, (0.02, 0.04, 0.06, 0.08, 0.10)[severity - 1], x.shape)


def _motion_blur(
    x: np.ndarray, mask: np.ndarray, severity: int, rng: np.random.Generator
) -> np.ndarray:
    k = (3, 5, 7, 9, 11)[severity - 1]
    kernel = np.zeros((k, k), np.float32)
    kernel[k // 2] = 1.0 / k  # lateral probe motion
    return cv2.filter2D(x.astype(np.float32), -1, kernel, borderType=cv2.BORDER_REFLECT)


def _gain(factors: tuple[float, ...]) -> Corruption:
    def apply(
        x: np.ndarray, mask: np.ndarray, severity: int, rng: np.random.Generator
    ) -> np.ndarray:
        return x * factors[severity - 1]

    return apply


def _contrast_down(
    x: np.ndarray, mask: np.ndarray, severity: int, rng: np.random.Generator
) -> np.ndarray:
    mean = float(x[mask].mean()) if mask.any() else float(x.mean())
    return mean + (x - mean) * (0.8, 0.65, 0.5, 0.35, 0.2)[severity - 1]


def _jpeg(x: np.ndarray, mask: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    quality = (50, 30, 15, 10, 7)[severity - 1]
    ok, data = cv2.imencode(
        ".jpg", np.round(x * 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    decoded = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)
    assert decoded is not None and ok, "OpenCV could not round-trip a JPEG"
    return decoded.astype(np.float32) / 255.0


CORRUPTIONS: dict[str, Corruption] = {
    "speckle": _speckle,
    "gaussian_noise": _gaussian_noise,
    "depth_attenuation": _usaugment("DepthAttenuation", attenuation_rate=(0.6, 1.2, 1.8, 2.4, 3.0)),
    "acoustic_shadow": _usaugment(
        "GaussianShadow",
        strength=(0.25, 0.39, 0.52, 0.66, 0.8),
        sigma_x=(0.1,) * 5,
        sigma_y=(0.1,) * 5,
    ),
    "haze": _usaugment("HazeArtifact", radius=(0.5,) * 5, sigma=(0.02, 0.04, 0.06, 0.08, 0.1)),
    "speckle_reduction": _usaugment(
        "SpeckleReduction",
        sigma_spatial=(0.4, 0.8, 1.2, 1.6, 2.0),
        sigma_color=(0.1, 0.2, 0.3, 0.4, 0.5),
    ),
    "motion_blur": _motion_blur,
    "gain_up": _gain((1.2, 1.4, 1.6, 1.8, 2.0)),
    "gain_down": _gain((0.85, 0.7, 0.55, 0.4, 0.25)),
    "contrast_down": _contrast_down,
    "jpeg": _jpeg,
}


def corrupt(
    image: np.ndarray, mask: np.ndarray, name: str, severity: int, seed: int = 0
) -> np.ndarray:
    """``image`` (uint8 ``[H, W]``) corrupted inside ``mask`` (nonzero = scan region).

    Raises:
        ValueError: for an unknown corruption or a severity outside 1..5.
    """
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; choose from {sorted(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be 1..5, got {severity}")
    inside = mask > 0
    x = image.astype(np.float32) / 255.0
    out = CORRUPTIONS[name](x, inside, severity, np.random.default_rng(seed))
    out = np.where(inside, np.clip(out, 0.0, 1.0), x)
    return np.round(out * 255.0).astype(np.uint8)


def corruption_grid(image: np.ndarray, mask: np.ndarray, path: str, seed: int = 0) -> str:
    """A PNG of every corruption (rows) at every severity (columns) on one image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(CORRUPTIONS)
    fig, axes = plt.subplots(len(names), 6, figsize=(9, 1.55 * len(names)))
    for r, name in enumerate(names):
        axes[r, 0].imshow(image, cmap="gray", vmin=0, vmax=255)
        axes[r, 0].set_ylabel(name, fontsize=7, rotation=0, ha="right", va="center")
        for s in SEVERITIES:
            axes[r, s].imshow(corrupt(image, mask, name, s, seed), cmap="gray", vmin=0, vmax=255)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    for s, title in enumerate(["clean", *(f"severity {k}" for k in SEVERITIES)]):
        axes[0, s].set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
