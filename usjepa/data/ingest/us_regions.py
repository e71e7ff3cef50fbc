"""The scanner's own layout of a DICOM screen: its Sequence of Ultrasound Regions.

A scanner that exports a screen as DICOM usually says where its images are: each item of
the Sequence of Ultrasound Regions (0018,6011) is a rectangle with a spatial format (1 is
a 2D image, tissue or flow; 2 M-mode; 3 spectral; 4 waveform; 5 graphics; 0 none) and a
data type (13 a grey-scale bar, 14 a colour bar, ...). ``usjepa data build`` uses it for
DICOM sources: the scan region is detected inside each 2D rectangle separately (a
dual-view screen gives two regions, not one hull over both and the bar between) and the
rectangles of everything else (bars, traces, spectra) are left out, and hidden from the
detector (a bar drawn inside an image would pull the image's hull out to it).

Only the geometry is read; no tag value reaches any artefact. A file whose rectangles do
not fit its pixels (a file resized or cropped after the scanner wrote it) is treated as
having none: the regions then describe other pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SPATIAL_2D = 1
MIN_SIDE = 16  # a 2D rectangle smaller than this (after resizing) is too small to detect in


@dataclass(frozen=True)
class Region:
    """One rectangle of a screen, inclusive pixel bounds in the stored frame."""

    x0: int
    y0: int
    x1: int
    y1: int
    spatial_format: int
    data_type: int

    @property
    def is_2d(self) -> bool:
        """A 2D image (tissue or flow), where a scan region can lie."""
        return self.spatial_format == SPATIAL_2D


@dataclass(frozen=True)
class ScreenLayout:
    """A DICOM file's regions and the frame size they refer to (rows, columns)."""

    regions: tuple[Region, ...]
    rows: int
    cols: int

    def boxes(self, height: int, width: int, two_d: bool) -> list[tuple[int, int, int, int]]:
        """``(x0, y0, x1, y1)`` half-open boxes of the 2D (or the other) regions, scaled
        to a frame of ``height`` x ``width``; a pixel partly inside a box is inside."""
        sy, sx = height / self.rows, width / self.cols
        out = []
        for r in self.regions:
            if r.is_2d != two_d:
                continue
            x0, y0 = int(np.floor(r.x0 * sx)), int(np.floor(r.y0 * sy))
            x1 = min(width, int(np.ceil((r.x1 + 1) * sx)))
            y1 = min(height, int(np.ceil((r.y1 + 1) * sy)))
            out.append((x0, y0, x1, y1))
        return out


def layout_of(dataset: Any) -> tuple[ScreenLayout | None, str]:
    """The usable layout of a pydicom dataset, or ``None`` and why there is none."""
    items = dataset.get("SequenceOfUltrasoundRegions") or []
    rows, cols = int(getattr(dataset, "Rows", 0) or 0), int(getattr(dataset, "Columns", 0) or 0)
    if not items:
        return None, "no Sequence of Ultrasound Regions"
    regions = []
    for item in items:
        try:
            region = Region(
                int(item.RegionLocationMinX0),
                int(item.RegionLocationMinY0),
                int(item.RegionLocationMaxX1),
                int(item.RegionLocationMaxY1),
                int(item.RegionSpatialFormat),
                int(item.RegionDataType),
            )
        except (AttributeError, TypeError, ValueError):
            return None, "a region without its location, spatial format or data type"
        if not (0 <= region.x0 < region.x1 < cols and 0 <= region.y0 < region.y1 < rows):
            return None, (
                f"region ({region.x0}, {region.y0})-({region.x1}, {region.y1}) lies outside "
                f"the {cols} x {rows} frame (the pixels were resized or cropped after export)"
            )
        regions.append(region)
    if not any(r.is_2d for r in regions):
        return None, "no 2D region"
    return ScreenLayout(tuple(regions), rows, cols), ""


def read_layout(path: Path) -> tuple[ScreenLayout | None, str]:
    """:func:`layout_of` for a DICOM file, reading its header only."""
    import pydicom

    try:
        dataset = pydicom.dcmread(str(path), stop_before_pixels=True)
    except Exception as err:  # pydicom raises many types for bad files
        return None, f"unreadable header: {str(err).strip()[:120]}"
    return layout_of(dataset)


def detect_in_layout(
    image: np.ndarray,
    layout: ScreenLayout,
    detect: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """The scan region of a frame ``[H, W]`` or clip ``[T, H, W]`` whose screen has
    ``layout``: ``detect`` run inside each 2D rectangle (a rectangle too small to detect
    in is taken whole), the other rectangles left out. Returns a ``[H, W]`` uint8 mask."""
    height, width = image.shape[-2:]
    mask = np.zeros((height, width), np.uint8)
    scans = layout.boxes(height, width, two_d=True)
    # a bar or trace drawn over part of an image is left out, and blacked out before the
    # detector looks (else it joins the region's hull, and the corner it spans with it);
    # a rectangle declared over most of one (some scanners frame the whole screen) is not
    others = [
        box
        for box in layout.boxes(height, width, two_d=False)
        if all(_overlap(box, scan) <= 0.5 * _area(scan) for scan in scans)
    ]
    if others:
        image = image.copy()
        for x0, y0, x1, y1 in others:
            image[..., y0:y1, x0:x1] = 0
    for x0, y0, x1, y1 in scans:
        if min(x1 - x0, y1 - y0) < MIN_SIDE:
            mask[y0:y1, x0:x1] = 255
            continue
        crop = np.ascontiguousarray(image[..., y0:y1, x0:x1])
        mask[y0:y1, x0:x1] = np.maximum(mask[y0:y1, x0:x1], detect(crop))
    for x0, y0, x1, y1 in others:
        mask[y0:y1, x0:x1] = 0
    return mask


def _area(box: tuple[int, int, int, int]) -> int:
    return max(0, box[2] - box[0]) * max(0, box[3] - box[1])


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> int:
    return _area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))
