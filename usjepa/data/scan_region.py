"""Scan-region detection for USrc: which pixels of a frame hold ultrasound data.

The region is found from the acquisition's geometry, not from echo intensity alone, so
that dark tissue inside it (anechoic cysts, bladders, vessels, acoustic and rib
shadows) stays inside. Every probe geometry in use gives a convex region: a linear
array's rectangle, a phased array's sector with its apex at the top, a cropped frame's
whole image; a convex array's fan is convex but for its face, an arc bulging into the
image. So:

1. signal: blur (speckle nulls stop being holes) and a low threshold (dim deep tissue
   counts; above a screen's dark grey background where whole rows show it), less a
   screen's flat fill (header bands, side panels, app bars and buttons are drawn in
   exactly uniform grey, with their text closed into them; speckle never is), opened
   with a kernel wider than any overlay stroke (text, rulers, ECG);
2. the main component (:func:`~usjepa.data.outline.main_part`; with any large part in
   its columns: a part a shadow cut off; a colour bar beside it is none, nor a header
   bar across the screen (:func:`~usjepa.data.outline.part_of_region`); less a screen's
   header text that the blur joined on: :mod:`usjepa.data.header`), opened again
   with a twice wider kernel so that thin overlays glued to its edge (a grey-scale bar,
   a depth ruler, an ECG baseline) fall off; a bar drawn against a vertical side of the
   region (a ramp: one grey level across each row) is cut off at that side; the hull
   below spans the component within one stroke of that core, so a sector's narrow apex
   stays, held to a slanted side that a depth ruler marks (:mod:`usjepa.data.ruler`);
3. its convex hull; where the frame cuts a fan's top flat, or a straight top half the
   region's width wide does (an image's border inside a screen; not for a rectangle,
   which has no side to restore), and no face is in view, together with the hull
   mirrored about the probe's axis (the middle of that top edge): scanners display fans
   symmetric, so a side lost to a rib shadow is restored from the other side (edges the
   frame's border makes are not mirrored, nothing mirrored passes a vertical side, which
   is an image border inside a screen, even with a depth ruler's ticks standing beyond
   it, and a fan whose face is in view keeps its own sides: some are steered, their
   sides at unequal angles); a hull whose top spans the frame's width is a frame
   cropped to a linear array's image: everything below its top edge, down to the
   frame's bottom where that is reached or where only live rows (nearly every pixel
   above 0: a dark far field, not a screen's black padding; a cropped frame's far field
   may be flat 1) lie below; a hull with vertical sides on both hands and live rows in
   its upper half (a linear image inside a screen) is that rectangle, down through the
   rows below it that are live or dim above the screen's padding level (0, or 1 in some
   JPEG exports, whose far field is then flattened to it but for some pixels);
4. a phased array's sector: where the hull's top is narrow and its sides meet above it
   (within half its height), the sector is redrawn from those sides out to the region's
   deepest point, so that its dim far corners and the apex the opening blunted come back;
   the sides are read off the component opened with a disc twice as wide, less its rows
   off the line (glued ticks do not tilt them), or, where they fade, off its own edge;
5. else the face: where the component's top edge holds a concave arc (the longest run
   of columns where it is shallow; a fan's sides are steeper), what lies above a robust
   quadratic through it is cut, also where the frame cuts the arc off or it lies off the
   frame's middle.

Frames must show square pixels (as scanned, or resized keeping their aspect ratio): a
frame stretched to another shape is detected at the ``aspect`` it was stretched by.

Clips: pixels of static overlays do not change over time, scan data does; a clip is
detected as one frame, its peak projection with the pixels that never change blacked out.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from usjepa.data.header import drop_header_text
from usjepa.data.outline import (
    boxed,
    clip_to_straight_sides,
    cut_above_face,
    extend_box_down,
    face_arc,
    label_parts,
    labelled,
    large_parts,
    live_below,
    main_part,
    outline_points,
    padded,
    part_of_region,
    vertical_sides,
)
from usjepa.data.ruler import follow_ruler
from usjepa.data.sector import complete_sector, sector_mask

__all__ = ["detect_scan_region", "detect_scan_region_clip", "iou", "patch_cover", "sector_mask"]


def detect_scan_region(
    frame: np.ndarray,
    threshold: int | None = None,
    blur: int = 5,
    stroke: int | None = None,
    symmetric: bool = True,
    aspect: float = 1.0,
    flat: bool = True,
) -> np.ndarray:
    """Scan-region mask of one grayscale frame.

    Args:
        frame: ``[H, W]`` uint8 grayscale (colour frames: convert first).
        threshold: grey level above which blurred pixels count as signal. Default: two
            levels above the frame's black (the 1st percentile of the blurred frame,
            read on every 4th row and column), at most 6; low, because deep tissue in a
            dim fan and a sector's dim edges are barely above the black background; not
            capped where whole rows hold that black (5 to 32), or it and the level above
            (a screen's dark grey background, as a frame grabber captures a scanner's
            display), which the steps after the signal then read as black.
        blur: box-blur size that bridges speckle nulls.
        stroke: opening kernel size; overlay strokes thinner than this vanish. Defaults
            to about 3.5 % of the short side (9 px at 256 px).
        symmetric: restore a side of a fan lost to shadow from the other side, where the
            frame cuts the fan's top flat and no face is in view.
        aspect: the width over the height of what one pixel shows. 1 for a frame as the
            scanner displayed it, or resized keeping its aspect ratio (as ``usjepa data
            build`` does): a sector's floor is then a circle about its apex. A frame
            stretched to another shape bends that circle into an ellipse; give the stretch
            (an 800 x 600 frame resized to 256 x 256: ``(800 / 256) / (600 / 256)``, 1.33)
            and the frame is detected at square pixels (widened or heightened, so that no
            detail is lost) and the mask resized back.
        flat: leave out areas of flat fill (a screen's header band, side panels, app bars
            and buttons), whatever their grey level; scan data is never flat.

    Returns:
        ``[H, W]`` uint8 mask, 255 inside the scan region.
    """
    if frame.ndim != 2 or frame.dtype != np.uint8:
        raise ValueError(
            f"detect_scan_region needs a [H, W] uint8 frame, got "
            f"{frame.shape} {frame.dtype}; convert with cv2.cvtColor first"
        )
    if not 0.1 <= aspect <= 10:
        raise ValueError(f"aspect {aspect} is no pixel shape; give width / height in [0.1, 10]")
    if abs(aspect - 1.0) > 0.01:  # back to square pixels, and the mask back to the frame
        h, w = frame.shape  # widened or heightened: no detail lost to a narrower frame
        size = (round(w * aspect), h) if aspect > 1 else (w, round(h / aspect))
        square = cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR)
        mask = detect_scan_region(square, threshold, blur, stroke, symmetric, flat=flat)
        return np.asarray(cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST))
    smooth = cv2.blur(frame, (blur, blur))
    # the frame's black: the subsample's 1st percentile, from its histogram
    counts = np.bincount(smooth[::4, ::4].ravel(), minlength=256).cumsum()
    black = int(np.searchsorted(counts, 0.01 * counts[-1]))
    # a screen's dark grey (a frame grabber's capture of a display: 8-16, dithered at
    # times; not a blank light frame), not dim tissue: whole rows hold it; read as black
    ground = black + 1 if 4 < black <= 32 and padded(frame, black, spread=1) else 0
    if threshold is None:
        threshold = black + 2 if ground else min(6, black + 2)
    signal = cv2.threshold(smooth, threshold, 255, cv2.THRESH_BINARY)[1]
    areas = _flat_areas(frame, stroke) if flat else None
    if areas is not None:
        signal = cv2.bitwise_and(signal, cv2.bitwise_not(areas))
    if ground:
        frame, black = np.asarray(cv2.subtract(frame, np.full_like(frame, ground))), 0
    level = max(0, threshold - ground)  # the signal's level in the frame read so
    return _region(signal, stroke, blur // 2, symmetric, frame, level, black, areas is not None)


#: grey level from which flat fill counts as interface (see :func:`_flat_areas`), and
#: the most a flat pixel's 3 x 3 neighbourhood may vary (0: drawn fill is exact; 1 also
#: took dim, interpolated tissue in composited screens)
FLAT_LEVEL = 24
FLAT_SPREAD = 0
#: a region's top cut by a straight row at least this share of its width wide is cut by
#: an image's border (a face is curved, a sector's top narrow): inside a screen, where the
#: frame's own top edge is not that border, a fan cut so is mirrored too
FLAT_TOP = 0.5


def _flat_areas(frame: np.ndarray, stroke: int | None) -> np.ndarray | None:
    """Where a screen's interface is drawn in flat fill (header bands, side panels, app
    bars, buttons): areas, a stroke wide, in which many pixels (2 in 5) equal all eight
    neighbours, above dim grey levels; text and icons on a panel are closed into it; None
    where there is none. Scan data is not that flat: speckle varies from pixel to pixel."""
    k = _stroke(frame.shape, stroke)
    spread = cv2.morphologyEx(frame, cv2.MORPH_GRADIENT, _square(3))  # 3 x 3 max - min
    flat = cv2.threshold(spread, FLAT_SPREAD, 255, cv2.THRESH_BINARY_INV)[1]  # spread <= it
    # speckle is multiplicative: dim tissue, interpolated by scan conversion, can be
    # nearly flat; a panel's fill is flat at any level, so only levels above dim count
    flat = cv2.bitwise_and(flat, cv2.threshold(frame, FLAT_LEVEL - 1, 255, cv2.THRESH_BINARY)[1])
    if cv2.countNonZero(flat) < 0.01 * flat.size:  # a scan without an interface: done
        return None
    share = cv2.blur(flat, (k, k))
    areas = cv2.threshold(share, 100, 255, cv2.THRESH_BINARY)[1]
    # text, icons and tick marks drawn on a panel are the panel's too: close the gaps
    return np.asarray(cv2.morphologyEx(areas, cv2.MORPH_CLOSE, _square(2 * k + 1)))


def detect_scan_region_clip(
    frames: np.ndarray,
    static: int = 2,
    stroke: int | None = None,
    symmetric: bool = True,
    aspect: float = 1.0,
) -> np.ndarray:
    """Scan-region mask of a clip ``[T, H, W]``: the single-frame detector on the clip's
    peak projection (each pixel at its brightest, so a fan dark in one frame is lit in
    another), with the pixels that never change (a screen's text, rulers, bars and logos
    are drawn alike in every frame; speckle never is) set to black first.

    Args:
        frames: ``[T >= 2, H, W]`` uint8 grayscale frames of one clip.
        static: pixels whose grey level varies by at most this over the clip count as
            interface (2 allows for video compression's flicker).
        stroke: as in :func:`detect_scan_region`.
        symmetric: as in :func:`detect_scan_region`.
        aspect: as in :func:`detect_scan_region` (a clip stored stretched).
    """
    if frames.ndim != 3 or len(frames) < 2 or frames.dtype != np.uint8:
        raise ValueError(
            f"a clip needs [T >= 2, H, W] uint8 frames, got {frames.shape} {frames.dtype}"
        )
    peak = frames.max(0)
    change = cv2.subtract(peak, frames.min(0))
    moving = cv2.compare(change, np.full_like(change, static), cv2.CMP_GT)
    # tissue a compressed video left unchanged between frames leaves small static holes
    moving = cv2.morphologyEx(moving, cv2.MORPH_CLOSE, _square(5))
    projection = cv2.bitwise_and(peak, moving)
    return detect_scan_region(projection, stroke=stroke, symmetric=symmetric, aspect=aspect)


def _stroke(shape: tuple[int, ...], stroke: int | None) -> int:
    """The opening kernel: ``stroke``, else about 3.5 % of the short side, odd."""
    return stroke or max(3, int(round(min(shape[:2]) * 0.035)) | 1)


def _square(size: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_RECT, (size, size))


def _region(
    signal: np.ndarray,
    stroke: int | None,
    grow: int,
    symmetric: bool,
    frame: np.ndarray | None = None,
    level: int | None = None,
    black: int = 0,
    screen: bool = False,
) -> np.ndarray:
    """Steps 2-5 of the module docstring on a 0/255 signal map; ``grow`` px of blur spill
    are taken off the result. ``frame``: the grey frame, whose rows below the signal tell
    a cropped frame's dark far field from padding (and an image's inside a screen, above
    its padding's level: ``black``, the frame's 1st percentile, where whole rows hold it),
    and whose black rows (at most ``level``) a screen's header text lies above; on a
    ``screen`` (one with flat fill), a depth ruler may stand along a slanted side."""
    h, w = signal.shape
    k = _stroke((h, w), stroke)
    mask = np.zeros((h, w), np.uint8)
    binary = cv2.morphologyEx(signal, cv2.MORPH_OPEN, _square(k))
    n, labels = label_parts(binary, k)
    if n <= 1:
        return mask
    # the region and any large part a shadow cut off from it (a bright near-field
    # column above a dark band, say); overlays are small once opened
    big = large_parts(labels, n, 0.1, k // 2)
    if len(big) > 1:  # a part beside the region's columns is no shadow: a colour bar, say
        main = main_part(labels, big)
        columns = (labels == main).any(0)
        big = np.array([b for b in big if b == main or part_of_region(labels == b, columns, k)])
    if len(big) == 1:
        component = labelled(labels, int(big[0]))
    else:
        component = np.isin(labels, big).astype(np.uint8) * 255
    if frame is not None and level is not None:  # header text the blur joined on
        drop_header_text(component, frame, level, grow)
    core, points = _core_outline(component, k)
    # a vertical side inside the frame (an image's border within a screen) may have a
    # bar drawn against it; the component's own outline shows the bar's whole edge
    if frame is not None and _bar_may_be_glued(points, h, w, k, grow):
        if _cut_glued_bar(component, outline_points(component), k, grow, frame):
            core, points = _core_outline(component, k)
    if screen and frame is not None and level is not None:  # a scanner's depth ruler
        points = follow_ruler(points, component, frame, level, grow, k)
    own = points  # before mirroring: a steered sector is not symmetric
    read_arc = functools.cache(lambda: face_arc(core, tol=0.02 * h))  # a sector needs none
    top = points[:, 1].min()
    at_top = points[points[:, 1] == top, 0]
    sides = None  # the outline's vertical sides, found where they are needed
    box = False
    cut_flat = top <= grow + 1
    if not cut_flat and at_top.max() - at_top.min() >= FLAT_TOP * np.ptp(points[:, 0]):
        sides = vertical_sides(points, h)
        box = boxed(points, sides, k)
        cut_flat = not box  # a rectangle has no side to restore
    if symmetric and cut_flat and ((arc := read_arc()) is None or not arc[2]):
        # a fan whose top the frame or its image's border cuts flat, no face in view
        face = points[points[:, 1] <= top + max(2, int(0.03 * h)), 0]
        axis = (int(face.min()) + int(face.max())) / 2.0
        # the region's own edges only: where the frame's border cuts it is no edge to
        # mirror (a fan cropped on one side would gain a straight side on the other)
        x, y = points[:, 0], points[:, 1]
        edge = points[(x > 1) & (x < w - 2) & (y > 1) & (y < h - 2)]
        mirrored = edge.copy()
        mirrored[:, 0] = np.clip(np.round(2 * axis - edge[:, 0]), 0, w - 1)
        points = np.concatenate([points, mirrored])
    cv2.fillConvexPoly(mask, cv2.convexHull(points.astype(np.int32)), 255)
    if len(points) > len(own):  # mirrored: nothing past a side an image border cut straight
        clip_to_straight_sides(mask, own, sides or vertical_sides(own, h), h, k)
    if box and frame is not None and sides is not None:  # an image in a screen, dark below
        padding = black if black and padded(frame, black) else 0
        extend_box_down(mask, frame, sides, grow, padding)
    _, first_row, _, rows = cv2.boundingRect(mask)
    first, last_row = mask[first_row] > 0, first_row + rows - 1
    reached = first[: k // 2 + 1].any() and first[-(k // 2 + 1) :].any()
    if reached and (last_row >= h - k or (frame is not None and live_below(frame, last_row))):
        # a frame cropped to a linear array's image: the rectangle below its top edge, to
        # the frame's bottom when that is reached or only dark data lies below
        mask[first_row:] = 255
        return mask if grow <= 0 else np.asarray(cv2.erode(mask, _square(2 * grow + 1)))
    hull = mask if len(points) == len(own) and not box else None  # as drawn: own's hull
    if not complete_sector(mask, own, component, 2 * k + 1, hull) and (arc := read_arc()):
        cut_above_face(mask, arc[0], arc[1])
    if grow > 0:  # the blur spread the region by about half its width on every side
        mask = np.asarray(cv2.erode(mask, _square(2 * grow + 1)))
    return mask


def _core_outline(component: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The component's core (opened with a twice wider kernel) and the outline of the
    component near it: a sector's apex, thinner than the wide kernel, stays; a long thin
    overlay glued to the region stays out."""
    core = cv2.morphologyEx(component, cv2.MORPH_OPEN, _square(2 * k))
    if not cv2.countNonZero(core):  # a region narrower than the wide kernel: keep it as it is
        core = component
    support = cv2.bitwise_and(component, cv2.dilate(core, _square(k)))
    return core, outline_points(support)


def _bar_may_be_glued(points: np.ndarray, h: int, w: int, k: int, margin: int) -> bool:
    """Whether an outline holds a straight vertical side (one step of the compressed
    outline a twentieth of the frame's height long) more than ``margin`` px inside the
    frame, with the outline's extreme on that side 3 px to two strokes beyond it: room
    for a bar drawn against it. A gate on every frame, so only exact single steps count
    (cheaper than :func:`vertical_sides`, which the check behind the gate uses)."""
    x, y = points[:, 0], points[:, 1]
    nx, ny = np.concatenate((x[1:], x[:1])), np.concatenate((y[1:], y[:1]))  # each next point
    step = (x == nx) & (np.abs(y - ny) >= 0.05 * h) & (x > margin) & (x < w - 1 - margin)
    if not step.any():
        return False
    sides = x[step]
    past = np.concatenate([sides - x.min(), x.max() - sides])
    return bool(((past >= 3) & (past <= 2 * k)).any())


def _cut_glued_bar(
    region: np.ndarray, points: np.ndarray, k: int, spill: int, frame: np.ndarray
) -> bool:
    """Cut a grey-scale or colour bar drawn against a vertical side of the region off at
    that side (``region`` in place); whether one was. The outline ``points`` (runs
    compressed to their ends) holds vertical sides where its near-vertical steps add up
    to a tenth of the frame's height in one column. A second vertical side further out,
    at most two strokes away, bounds a strip; when most of the strip's rows are one grey
    level across (within 2: a JPEG's ringing), above dark, at many levels down the strip
    (a drawn ramp; scan data varies along every row, tick marks are drawn at one level),
    the strip is a bar. A strip at the frame's edge has no image to cut back to: it stays."""
    h, w = region.shape
    peaks, xs, ys, ye = vertical_sides(points, h)
    if len(peaks) < 2:
        return False
    left, right = int(points[:, 0].min()), int(points[:, 0].max())
    for inner, outer, outward in ((peaks[1], peaks[0], -1), (peaks[-2], peaks[-1], 1)):
        if abs(outer - inner) > 2 * k or abs(outer - (left if outward < 0 else right)) > 2:
            continue  # too far apart for a strip, or the outer side not the region's
        if not spill < outer < w - 1 - spill:
            continue  # a bar at the frame's edge: no image beside it to cut back to
        # the strip's middle columns (clear of its blurred sides), on the outer side's rows
        middle, half = (inner + outer) // 2, max(1, abs(outer - inner) // 4)
        on = np.abs(xs - outer) <= 1
        top, bottom = int(min(ys[on].min(), ye[on].min())), int(max(ys[on].max(), ye[on].max()))
        strip = frame[top : bottom + 1, middle - half : middle + half + 1]
        level = strip.max(1)
        drawn = (level - strip.min(1) <= 2) & (level >= 8)  # to a JPEG's ringing; not black
        # a ramp: most rows drawn, at many levels (tick marks are drawn at one)
        if drawn.mean() < 0.5 or len(np.unique(level[drawn])) < 4:
            continue
        if outward > 0:
            region[:, inner + 1 :] = 0
        else:
            region[:, :inner] = 0
        return True
    return False


def patch_cover(mask: np.ndarray, grid: int) -> np.ndarray:
    """Share of scan-region pixels in each cell of a ``grid x grid`` patch grid: area
    interpolation of a binary uint8 mask (0 outside, 255 inside, as ``usjepa data build``
    writes them and shards unpack them), exact to 1/255 for any mask size. The one
    patch-cover rule of training samples, batches and evaluation.

    Returns:
        ``[grid, grid]`` float32 in [0, 1]; the mask generator keeps patches above a
        threshold (0.5 by default).
    """
    return cv2.resize(mask, (grid, grid), interpolation=cv2.INTER_AREA).astype(np.float32) / 255


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two masks (nonzero = inside)."""
    a, b = a > 0, b > 0
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0
