"""Scan-region detection for USrc: which pixels of a frame hold ultrasound data.

Single frames: the scan region is the large, textured, bright-enough area; overlays (text,
rulers, grey-scale bars, ECG traces) are thin. So: blur (speckle nulls stop being holes),
threshold, open with a kernel wider than any overlay stroke (removes text and lines),
keep the largest component. Every probe geometry in use (linear, convex, phased with the
apex above the image) meets each image column in one interval, so the region is filled
column by column between the component's top edge (median-smoothed; it follows a convex
probe's concave face) and its far edge. The far edge is one smooth curve (a line or an
arc), so a robust quadratic fit bridges dark bays where acoustic shadows or anechoic
structures reach it; dark lesions and vessels inside are filled by the column fill.

Clips: pixels of static overlays do not change over time, scan data does, so the
temporal standard deviation separates them before the same clean-up.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F


def detect_scan_region(
    frame: np.ndarray, threshold: int = 12, blur: int = 5, stroke: int | None = None
) -> np.ndarray:
    """Scan-region mask of one grayscale frame.

    Args:
        frame: ``[H, W]`` uint8 grayscale (colour frames: convert first).
        threshold: grey level above which blurred pixels count as signal.
        blur: box-blur size that bridges speckle nulls.
        stroke: opening kernel size; overlay strokes thinner than this vanish. Defaults
            to about 2.5 % of the short side (7 px at 256 px).

    Returns:
        ``[H, W]`` uint8 mask, 255 inside the scan region.
    """
    if frame.ndim != 2 or frame.dtype != np.uint8:
        raise ValueError(
            f"detect_scan_region needs a [H, W] uint8 frame, got "
            f"{frame.shape} {frame.dtype}; convert with cv2.cvtColor first"
        )
    smooth = cv2.blur(frame, (blur, blur))
    return _clean(smooth > threshold, stroke, grow=blur // 2)


def detect_scan_region_clip(
    frames: np.ndarray, min_std: float = 2.0, stroke: int | None = None
) -> np.ndarray:
    """Scan-region mask of a clip ``[T, H, W]`` from temporal variation (static overlays drop)."""
    if frames.ndim != 3 or len(frames) < 2:
        raise ValueError(f"a clip needs [T >= 2, H, W] frames, got shape {frames.shape}")
    std = frames.astype(np.float32).std(0)
    return _clean(cv2.blur(std, (5, 5)) > min_std, stroke, grow=2)


def _clean(signal: np.ndarray, stroke: int | None, grow: int) -> np.ndarray:
    """Largest region of ``signal``, column-filled; ``grow`` px of blur spill are removed."""
    h, w = signal.shape
    k = stroke or max(3, int(round(min(h, w) * 0.027)) | 1)
    binary = cv2.morphologyEx(
        signal.astype(np.uint8), cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k))
    )
    n, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    mask = np.zeros((h, w), np.uint8)
    if n <= 1:
        return mask
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    # [W, H]: one row per image column, so per-column scans are contiguous
    component = np.asarray(cv2.compare(labels, np.full_like(labels, largest), cv2.CMP_EQ)).T
    present = component.max(1) > 0
    top = component.argmax(1)
    bottom = h - 1 - component[:, ::-1].argmax(1)
    # columns the region only grazes (overlay remnants joined at its edge) are dropped
    present &= (bottom - top) > 0.1 * h
    cols = np.flatnonzero(present)
    if len(cols) < 3:
        return mask
    top_s = cv2.medianBlur(top[cols].astype(np.float32).reshape(1, -1), 5).ravel()
    bottom_f = _robust_far_edge(cols, bottom[cols].astype(np.float64), tol=0.02 * h)
    # the region meets each column in one interval: a polygon along both edges fills it
    outline = np.concatenate([np.stack([cols, top_s], 1), np.stack([cols, bottom_f], 1)[::-1]])
    cv2.fillPoly(mask, [np.round(outline).astype(np.int32)], 255)
    if grow > 0:  # the blur spread the region by about half its width on every side
        mask = np.asarray(
            cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_RECT, (2 * grow + 1,) * 2))
        )
    return mask


def _robust_far_edge(x: np.ndarray, y: np.ndarray, tol: float) -> np.ndarray:
    """The far edge per column, with dark bays (shadows reaching the edge) bridged.

    The far edge of every probe geometry is one smooth curve over the columns (a line for
    linear arrays, an arc for sector probes), so a quadratic fitted with outliers trimmed
    (columns whose edge a shadow pulls towards the probe) recovers it; the
    measured edge is kept wherever it agrees with the fit.
    """
    # Shadows only ever pull the measured edge towards the probe (smaller y), so trim
    # asymmetrically: drop columns well above the fit and refit, until stable.
    keep = np.ones(len(x), bool)
    xn = (x - x.mean()) / max(float(x.std()), 1.0)  # conditioning for the normal equations
    basis = np.stack([np.ones_like(xn), xn, xn * xn], 1)
    fit = y
    for _ in range(8):
        a = basis[keep]
        fit = basis @ np.linalg.solve(a.T @ a + 1e-9 * np.eye(3), a.T @ y[keep])
        new_keep = y >= fit - tol
        if new_keep.sum() < 3 or np.array_equal(new_keep, keep):
            break
        keep = new_keep
    return np.where(np.abs(y - fit) <= tol, y, fit)


def patch_occupancy(mask: np.ndarray, grid: int) -> np.ndarray:
    """Share of scan-region pixels in each cell of a ``grid x grid`` patch grid.

    Returns:
        ``[grid, grid]`` float32 in [0, 1]; the mask generator keeps patches above a
        threshold (0.5 by default).
    """
    t = torch.from_numpy((mask > 127).astype(np.float32))[None, None]
    return F.adaptive_avg_pool2d(t, grid)[0, 0].numpy()


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two masks (nonzero = inside)."""
    a, b = a > 0, b > 0
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0
