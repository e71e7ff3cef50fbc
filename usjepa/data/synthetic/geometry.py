"""Transducer scan geometries: where each beam sample sits in the image, and the scan region.

Tissue lives in image (physical) coordinates; the transducer samples it along beams. A
geometry maps the beam grid ``[NZ axial, NX lateral]`` to image pixel positions (used to
sample the tissue) and maps every image pixel back to beam coordinates (used for scan
conversion with ``cv2.remap``). The analytic inverse gives an exact scan-region mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

GeometryKind = Literal["convex", "linear", "phased"]
GEOMETRY_KINDS: tuple[GeometryKind, ...] = ("convex", "linear", "phased")


@dataclass(frozen=True)
class ScanGeometry:
    """A transducer footprint in an ``size x size`` image.

    Sector geometries (``convex``, ``phased``) are described by an apex ``(cx, apex_y)``,
    an inner radius ``r0`` (the probe face; near zero for phased arrays), an imaging
    ``depth`` and a half opening angle ``half_angle`` in radians. ``linear`` is a rectangle
    ``[x0, x1] x [y0, y0 + depth]``.
    """

    kind: GeometryKind
    size: int
    cx: float
    apex_y: float
    r0: float
    depth: float
    half_angle: float
    x0: float = 0.0
    x1: float = 0.0
    y0: float = 0.0

    def beam_positions(self, nz: int, nx: int) -> tuple[np.ndarray, np.ndarray]:
        """Image coordinates of every beam sample.

        Returns:
            ``(X, Y)``, each ``[nz, nx]`` float32, in pixels.
        """
        z = (np.arange(nz, dtype=np.float32) + 0.5) / nz
        lat = (np.arange(nx, dtype=np.float32) + 0.5) / nx
        if self.kind == "linear":
            xs = self.x0 + lat * (self.x1 - self.x0)
            ys = self.y0 + z * self.depth
            return np.broadcast_to(xs[None], (nz, nx)), np.broadcast_to(ys[:, None], (nz, nx))
        r = self.r0 + z[:, None] * self.depth
        th = (lat[None, :] * 2.0 - 1.0) * self.half_angle
        return self.cx + r * np.sin(th), self.apex_y + r * np.cos(th)

    def pixel_to_beam(self, nz: int, nx: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Beam coordinates of every image pixel, for ``cv2.remap``.

        Returns:
            ``(map_x, map_z, inside)``: lateral and axial beam indices, ``[size, size]``
            float32, and the boolean scan-region mask.
        """
        yy, xx = np.mgrid[0 : self.size, 0 : self.size].astype(np.float32) + 0.5
        if self.kind == "linear":
            u = (xx - self.x0) / (self.x1 - self.x0)
            v = (yy - self.y0) / self.depth
        else:
            dx, dy = xx - self.cx, yy - self.apex_y
            u = (np.arctan2(dx, dy) / self.half_angle + 1.0) / 2.0
            v = (np.hypot(dx, dy) - self.r0) / self.depth
        inside = (u >= 0) & (u < 1) & (v >= 0) & (v < 1)
        return (u * nx - 0.5).astype(np.float32), (v * nz - 0.5).astype(np.float32), inside

    def lateral_extent(self) -> tuple[float, float]:
        """Leftmost and rightmost image x that the scan region reaches."""
        if self.kind == "linear":
            return self.x0, self.x1
        reach = (self.r0 + self.depth) * np.sin(self.half_angle)
        return self.cx - reach, self.cx + reach


def sample_geometry(kind: GeometryKind, size: int, rng: np.random.Generator) -> ScanGeometry:
    """Draw a plausible footprint of one transducer kind, leaving room for overlays.

    The top ~8 % of the image holds text and the sides hold the ruler and grey bar, as on
    a scanner screen.
    """
    top = size * rng.uniform(0.07, 0.11)
    cx = size * (0.5 + rng.uniform(-0.03, 0.03))
    if kind == "linear":
        half_w = size * rng.uniform(0.30, 0.38)
        depth = size * rng.uniform(0.72, 0.84)
        return ScanGeometry(kind, size, cx, top, 0.0, depth, 0.0, cx - half_w, cx + half_w, top)
    if kind == "convex":
        half = np.deg2rad(rng.uniform(30.0, 38.0))
        r0 = size * rng.uniform(0.25, 0.40)
        depth = size * rng.uniform(0.62, 0.74)
        apex_y = top - r0 * np.cos(half) * 0.98
        # keep the far arc inside the image
        depth = min(depth, size * 0.97 - apex_y - r0)
        return ScanGeometry(kind, size, cx, apex_y, r0, depth, half)
    half = np.deg2rad(rng.uniform(38.0, 45.0))
    depth = size * rng.uniform(0.78, 0.86)
    depth = min(depth, (size * 0.48) / np.sin(half))
    return ScanGeometry(kind, size, cx, top, size * 0.01, depth, half)
