"""A scan region's outline: the straight sides an image's borders leave, and a convex
probe's face.

The scan-region detector (:mod:`usjepa.data.scan_region`) reads the acquisition's
geometry from the outline of the signal it finds. Two shapes in that outline carry
meaning. A vertical side is the border of the image a scan was cropped to (a fan's and a
sector's sides slant), also inside a screen, where the frame's own edges do not show it.
A concave arc along the top edge is a convex probe's face (a screen's header text that
the detector's blur joined on is taken off first: :mod:`usjepa.data.header`). Where the
signal falls into several large parts, one is the image (:func:`main_part`). This module
finds these and applies them to a mask; :mod:`usjepa.data.sector` does the same for a
phased array's sector.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import cv2
import numpy as np

from usjepa.data.fits import percentile, polyfit, runs
from usjepa.data.header import drop_above_gap  # noqa: F401  (moved there; importable here as before)

__all__ = [
    "VerticalSides",
    "boxed",
    "clip_to_straight_sides",
    "cut_above_face",
    "extend_box_down",
    "face_arc",
    "label_parts",
    "labelled",
    "large_parts",
    "live_below",
    "live_rows",
    "main_part",
    "padded",
    "outline_points",
    "part_of_region",
    "vertical_sides",
]


def label_parts(binary: np.ndarray, k: int) -> tuple[int, np.ndarray]:
    """``cv2.connectedComponents`` of a 0/255 map opened with a ``k`` px square (8-way),
    without statistics (OpenCV's statistics pass costs several times the labelling), in
    16-bit labels where they fit (cheaper: each part holds a whole k x k square), by the
    block-based BBDT algorithm: the default's labels, about 8 % faster on these maps."""
    h, w = binary.shape
    ltype = cv2.CV_16U if h * w // (k * k) < 1 << 16 else cv2.CV_32S
    n, labels = cv2.connectedComponentsWithAlgorithm(binary, 8, ltype, cv2.CCL_BBDT)
    return int(n), labels


def labelled(labels: np.ndarray, label: int) -> np.ndarray:
    """0/255 map of the part ``label`` in ``labels``: compared with the number itself, at
    half the cost of a filled array (OpenCV takes a scalar; its type stubs list arrays)."""
    return np.asarray(cv2.compare(labels, label, cv2.CMP_EQ))  # type: ignore[call-overload]


def large_parts(labels: np.ndarray, n: int, share: float, step: int = 1) -> np.ndarray:
    """The labels (of 1..n-1) of the parts at least ``share`` of the largest's area,
    counted on every ``step``-th row (the detector counts every ``k // 2``-th row of a map
    opened with a ``k`` px square: each part spans ``k`` rows, so two such rows at least),
    by OpenCV's histogram of 8-bit labels where they fit (a fraction of ``np.bincount``'s
    cost, which converts and scans the whole map first)."""
    if n == 2:  # one part, the common case: no areas to compare
        return np.array([1])
    areas: np.ndarray
    rows = labels[::step]  # whole rows: a contiguous read
    if n > 256:
        areas = np.bincount(rows.ravel(), minlength=n)[1:]
    else:
        areas = cv2.calcHist([rows.astype(np.uint8)], [0], None, [n], [0, n]).ravel()[1:]
    return 1 + np.flatnonzero(areas >= share * areas.max())


def main_part(labels: np.ndarray, parts: np.ndarray) -> int:
    """Which of a frame's large signal ``parts`` (labels in ``labels``) is its image.

    A duplex screen shows a second display below its image (a Doppler spectrum or an
    M-mode trace, as wide or wider, and as bright), and its text (a header joined to a
    table of measurements and a panel of settings by the blur) can outweigh both. So a
    part lying wholly below another part that shares columns with it (a header band at
    the frame's top edge aside: every image lies below one) is no image, and among the
    rest the part with the largest area times its solidity squared (its share of its
    convex hull) wins: an image fills most of its hull, text and the gaps between its
    lines do not.
    """
    boxes = {}
    for p in parts:
        part = labelled(labels, int(p))
        x, y, w, h = cv2.boundingRect(part)
        boxes[int(p)] = (x, y, x + w - 1, y + h - 1, part)
    best, score = int(parts[0]), -1.0
    for p, (x0, y0, x1, _, part) in boxes.items():
        if any(
            q != p and b[1] > 2 and b[3] < y0 and b[0] <= x1 and b[2] >= x0
            for q, b in boxes.items()
        ):
            continue  # a display below another part: a spectrum, a trace, a soft-key bar
        area = cv2.countNonZero(part)
        solidity = area / max(1.0, cv2.contourArea(cv2.convexHull(cv2.findNonZero(part))))
        if area * solidity**2 > score:
            best, score = p, area * solidity**2
    return best


def outline_points(region: np.ndarray) -> np.ndarray:
    """``[N, 2]`` points (x, y) of the outer outlines of a 0/255 map, runs compressed to
    their ends."""
    contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return np.concatenate(contours).reshape(-1, 2)


class VerticalSides(NamedTuple):
    """An outline's vertical sides: ``columns``, left to right, and the near-vertical
    steps they are made of (each step's column ``xs``, first row ``ys`` and last ``ye``)."""

    columns: list[int]
    xs: np.ndarray
    ys: np.ndarray
    ye: np.ndarray

    def length(self, column: int) -> int:
        """Rows the side at ``column`` spans, within a column of it."""
        near = np.abs(self.xs - column) <= 1
        return int(np.abs(self.ye[near] - self.ys[near]).sum())


def vertical_sides(points: np.ndarray, h: int) -> VerticalSides:
    """The vertical sides of an outline (:func:`outline_points`): where its near-vertical
    steps (within a column) add up to a tenth of the frame's height ``h``, within one
    column; each side at its most frequent column."""
    after = np.concatenate((points[1:], points[:1]))  # each next point (np.roll, cheaper)
    step = (np.abs(points[:, 0] - after[:, 0]) <= 1) & (points[:, 1] != after[:, 1])
    xs, ys, ye = points[step, 0], points[step, 1], after[step, 1]
    if not len(xs):
        return VerticalSides([], xs, ys, ye)
    length = np.bincount(xs, weights=np.abs(ye - ys))
    near = np.convolve(length, np.ones(3), "same")
    sides = np.flatnonzero(near >= 0.1 * h)
    if not len(sides):
        return VerticalSides([], xs, ys, ye)
    bounds = np.flatnonzero(np.diff(sides) > 1) + 1
    columns = [
        int(sides[a] + near[sides[a] : sides[b - 1] + 1].argmax())
        for a, b in zip([0, *bounds], [*bounds, len(sides)])
    ]
    return VerticalSides(columns, xs, ys, ye)


def boxed(points: np.ndarray, sides: VerticalSides, k: int) -> bool:
    """Whether an outline has vertical sides near both its extremes (within two strokes
    ``k``: a ruler's ticks may stand beyond one): a rectangle, a linear array's image or
    one cropped left and right."""
    columns, x = sides.columns, points[:, 0]
    near = 2 * k
    return len(columns) >= 2 and columns[0] - x.min() <= near and x.max() - columns[-1] <= near


def clip_to_straight_sides(
    mask: np.ndarray, own: np.ndarray, sides: VerticalSides, h: int, k: int
) -> None:
    """Clear what lies beyond a vertical side of the outline ``own`` (in place), so that a
    side mirrored from the other one does not cross an image's border. The outermost
    vertical side on each hand counts at the outline's extreme, or when it is long (half
    the frame's height) and within two strokes ``k`` of it (a depth ruler's ticks may
    stand beyond it)."""
    columns, x = sides.columns, own[:, 0]
    if not columns:
        return
    past = columns[0] - int(x.min())
    if past <= 1 or (past <= 2 * k and sides.length(columns[0]) >= 0.5 * h):
        mask[:, : max(0, columns[0] - 1)] = 0
    past = int(x.max()) - columns[-1]
    if past <= 1 or (past <= 2 * k and sides.length(columns[-1]) >= 0.5 * h):
        mask[:, columns[-1] + 2 :] = 0


def face_arc(core: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray, bool] | None:
    """A convex probe's face: the concave arc along the top edge of the 0/255 ``core``.

    The face is the longest run of columns where the top edge is shallow (rising at most
    one row per column; a fan's sides are steeper); columns where the frame's top row cuts
    the arc off are part of the run but not of the fit. A robust quadratic is fitted to
    the rest (columns whose edge a dark near field pushes down trimmed once).

    Returns:
        ``(columns, quadratic, curved)``: the run's columns, the quadratic's
        coefficients (``np.polyfit`` order), and whether the arc is a face in view
        (its deepest point within the run, sagging at least ``tol`` and 3 px below its
        ends; a nearly flat top is no face to read the fan's shape from); None where the
        top edge holds no concave arc (a linear, cropped or phased top), or where its
        deepest point lies past an end of the run inside the frame: an edge sloping one
        way is the chord across a dark near field, and a face cut along it would take off
        what the sides (a depth ruler's first ticks) hold above.
    """
    # each column's first row, read along the rows of the transposed map as booleans
    # (numpy's any and argmax stop at a row's first True; on bytes they read it whole)
    columns = cv2.transpose(core) > 0
    present = np.flatnonzero(columns.any(1))
    if len(present) < 8:
        return None
    top = columns.argmax(1)[present].astype(np.float64)
    slope = np.empty_like(top)  # np.gradient's central differences, without its overhead
    slope[1:-1] = (top[2:] - top[:-2]) / 2.0
    slope[0], slope[-1] = top[1] - top[0], top[-1] - top[-2]
    slope = np.abs(slope)
    smooth = np.convolve(slope, np.ones(5) / 5, mode="same")
    shallow = (smooth <= 1.0) & np.concatenate([[True], np.diff(present) == 1])
    # the longest run of shallow, adjacent columns
    starts, ends = runs(shallow)
    if not len(starts):
        return None
    longest = int(np.argmax(ends - starts))
    lo, hi = starts[longest], ends[longest]
    if hi - lo < max(8, 0.15 * len(present)):
        return None
    x, y = present[lo:hi].astype(np.float64), top[lo:hi]
    fit = y > 0  # the frame's top row: an arc cut off there
    if fit.sum() < 8:
        return None
    x_fit, y_fit = x[fit], y[fit]
    coef = polyfit(x_fit, y_fit, 2)
    keep = y_fit <= _quadratic(coef, x_fit) + tol
    if 8 <= keep.sum() < len(x_fit):
        coef = polyfit(x_fit[keep], y_fit[keep], 2)
    if coef[0] >= 0:  # not an arc bulging into the image
        return None
    deepest = float(-coef[1] / (2 * coef[0]))
    # deepest past a run end inside the frame: an edge sloping one way, a dark near
    # field's chord (past one the frame's side cuts, a face the frame cuts past its middle)
    if (deepest < x[0] and x[0] > 1) or (deepest > x[-1] and x[-1] < core.shape[1] - 2):
        return None
    sag = _quadratic(coef, deepest) - min(_quadratic(coef, x[0]), _quadratic(coef, x[-1]))
    curved = bool(x[0] <= deepest <= x[-1] and sag >= max(3.0, tol))
    return np.arange(present[lo], present[hi - 1] + 1), coef, curved


def _quadratic(coef: np.ndarray, x: Any) -> Any:
    """``np.polyval`` of a quadratic, by the same Horner steps, without its overhead."""
    return (coef[0] * x + coef[1]) * x + coef[2]


def cut_above_face(mask: np.ndarray, span: np.ndarray, coef: np.ndarray) -> None:
    """Clear what lies above a convex probe's face (in place): in the face's columns
    ``span``, every row above the quadratic ``coef`` fitted to it (:func:`face_arc`)."""
    edge = np.floor(_quadratic(coef, span)).astype(np.int64) - 1
    deepest = int(np.clip(edge.max(), 0, mask.shape[0]))  # only rows above the arc change
    if deepest == 0:
        return
    rows = np.arange(deepest)[:, None]
    mask[:deepest, span] = np.where(rows < edge[None, :], 0, mask[:deepest, span])


#: a live row: at least this share of its pixels above the frame's black (scan data
#: however dark; a screen's padding is its black, 0, or 1 in some JPEG exports)
LIVE = 0.9
#: a dim row of an image's far field: at least this share of it above black, and its
#: 90th percentile from 2 to this many levels above black. A JPEG export flattens most
#: of a dark far field to its padding's level, never all of it; an interface's bar or
#: button below an image is brighter, the halo of a resampled edge fainter.
DIM = 0.1
DARK = 8


def live_rows(pixels: np.ndarray, black: int = 0, share: float = LIVE) -> np.ndarray:
    """Per row of ``pixels``, whether at least ``share`` of it lies above ``black``."""
    return np.asarray(np.count_nonzero(pixels > black, axis=1) >= share * pixels.shape[1])


def live_below(frame: np.ndarray, bottom: int) -> bool:
    """Whether only live rows lie below row ``bottom`` of ``frame`` (nearly every pixel
    above 0: scan data, however dark, not a screen's black padding; a cropped frame's
    far field may be flat 1, so this is not the padding level)."""
    return bool(live_rows(frame[bottom + 1 :]).all())


def padded(frame: np.ndarray, level: int, spread: int = 0) -> bool:
    """Whether some row of ``frame`` (every 4th) is padding at ``level``: 95 % of it
    exactly that level (a JPEG export's black may be 1), or with ``spread`` within that
    many levels above it (a frame grabber's dark grey, dithered). Dim scan data at its
    lowest level, in a frame cropped to its image, never fills a row."""
    held = cv2.inRange(frame[::4], level, level + spread)
    return bool((np.count_nonzero(held, axis=1) >= 0.95 * frame.shape[1]).any())


def _dim_rows(pixels: np.ndarray, black: int) -> np.ndarray:
    """Per row of ``pixels``, whether it is live or dim (:data:`DIM`)."""
    top = percentile(pixels, 90) if len(pixels) else np.zeros(0)
    dim = live_rows(pixels, black, DIM) & (top >= black + 2) & (top <= black + DARK)
    return np.asarray(live_rows(pixels, black) | dim)


def extend_box_down(
    mask: np.ndarray, frame: np.ndarray, sides: VerticalSides, grow: int, black: int = 0
) -> None:
    """A rectangle inside a screen (vertical sides on both hands, found by :func:`boxed`)
    whose far field is dark: fill it, in place, between its outermost sides from its
    top down through the live or dim rows (:data:`LIVE`, :data:`DIM`; above the frame's
    ``black``) below it, when the rows of its upper half are live (a fan's black
    corners are not) and the region misses more of it than a band twice the blur's
    spill ``grow`` high (which the caller erodes off afterwards; a rounding at the edge
    is no far field)."""
    h = mask.shape[0]
    rows = np.flatnonzero(mask.any(1))
    if not len(rows):
        return
    left, right = sides.columns[0], sides.columns[-1]
    inner = frame[:, left + grow + 1 : right - grow]
    if inner.shape[1] < 1:
        return
    bottom = int(rows[-1]) - grow
    below = _dim_rows(inner[bottom + 1 :], black)
    end = bottom + (int(below.argmin()) if not below.all() else len(below))
    box = mask[rows[0] : min(h, end + grow + 1), left : right + 1]
    missing = box.size - np.count_nonzero(box)
    if (
        end > bottom
        and missing > 2 * grow * (right - left)
        and live_rows(inner[rows[0] + grow : (rows[0] + bottom) // 2], black).all()
    ):
        box[:] = 255


#: the share of a separate part's columns that must lie among the region's for it to be a
#: part a shadow cut off (a screen's soft-key bar below a sector, wider than it, is not)
WITHIN = 0.8
#: the share of the frame's width a part at its top or bottom edge spans to be a
#: screen's header or status bar (see :func:`part_of_region`)
BAND = 0.9


def part_of_region(part: np.ndarray, columns: np.ndarray, k: int) -> bool:
    """Whether a separate large ``part`` of a frame's signal is a piece of the region (whose
    columns are ``columns``, bool per image column) that a shadow cut off: :data:`WITHIN`
    of its columns are among the region's, and it is no bar across the frame (:data:`BAND`
    of its width) at its top or bottom edge reaching a stroke ``k`` past the region on a
    side, which no piece of a fan or a sector does: a screen's header or status bar with
    its text lines (a frame grabber's capture shows one above the image on a dark grey
    screen)."""
    mine = part.any(0)
    if (mine & columns).sum() < WITHIN * mine.sum():
        return False
    x, y, w, h = cv2.boundingRect(part.astype(np.uint8))
    edge = y <= 2 or y + h >= part.shape[0] - 2
    own = np.flatnonzero(columns)
    past = x < own[0] - k or x + w - 1 > own[-1] + k
    return not (edge and past and w >= BAND * part.shape[1])
