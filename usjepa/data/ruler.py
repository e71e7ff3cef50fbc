"""A depth ruler drawn along a fan's slanted side, held out of its scan region.

Scanners draw the depth scale beside the image's side: a tick mark a few pixels out at
every centimetre, a longer one with its number at every fifth, following a sector's or a
fan's slanted side. The scan-region detector's blur joins the ticks and numbers onto the
region as a strip a few pixels wide along the side, which its opening keeps (a square
fits the strip where it lies against the side), and the region's convex hull then runs
through the ticks' tips and the numbers: a wedge of the screen's black along the whole
side. In the frame itself, unblurred, most rows still end at the side; the ticks stand
out in some rows only. So the side is the line that most rows' last lit pixels lie on,
and the outline is held to it where ticks stand beyond.

Where the tissue along the side is dark (fluid, a shadow), the region's edge falls in
from the side and the ruler stands apart from it: then its marks show where the side is,
and the outline is taken out to them (:func:`mark_sides`).
"""

from __future__ import annotations

import cv2
import numpy as np

from usjepa.data.fits import lines_through, polyfit, runs

__all__ = ["follow_ruler", "hold_to_sides", "mark_sides"]

#: the share of a side's rows that must end on its line (within 1.5 px): a straight side.
#: Not all do: a JPEG's ringing lights the rows beside each tick out to it, and a fan
#: its image's border crops runs on down that border below its slanted side
ON_SIDE = 0.4
#: the share of a side's rows that must step back in by 2 px or more from the row above,
#: for its line to be read (ticks do at each tick; 6 of 532 sides on the timed frames did)
STEPS_BACK = 0.08
#: the share of its rows that must end 2 px or more beyond the line: ticks at intervals
#: (a tenth to a quarter of the rows on the composited screens; a plain side has none)
TICKED = 0.1
#: the grey level above which a screen's marks (ticks, dots) count: drawn bright, and
#: above 32 still once a 1 px line is resized; the fewest marks on a line that make a ruler
MARK_LEVEL = 32
MARKS = 5


def follow_ruler(
    points: np.ndarray,
    component: np.ndarray,
    frame: np.ndarray,
    level: int,
    spill: int,
    k: int,
) -> np.ndarray:
    """The outline ``points`` of the 0/255 ``component`` along a depth ruler beside a
    slanted side: held back where the blur joined its ticks on (:func:`hold_to_sides`),
    taken out to its marks where it stands apart from a dark side (:func:`mark_sides`)."""
    held = hold_to_sides(points, component, frame, level, spill, k)
    return mark_sides(held, component, frame, k)


def hold_to_sides(
    points: np.ndarray,
    component: np.ndarray,
    frame: np.ndarray,
    level: int,
    spill: int,
    k: int,
) -> np.ndarray:
    """The outline ``points`` (``[N, 2]`` x, y) of the 0/255 ``component``, with those
    beyond a slanted side that a ruler's ticks stand out of moved back onto it.

    On each hand, each row's outermost pixel of the component that is lit in the grey
    ``frame`` (above ``level``, unblurred), from a tenth of the component's height below
    its top down to a twentieth above its widest row (a fan's side ends in the corner
    with its floor), gives the side, where those rows step back in by 2 px or more from
    the row above at least 4 times and in :data:`STEPS_BACK` of them (ticks step out and
    back; a side's own rows step outwards): the line through pairs of them that most lie
    on (:func:`~usjepa.data.fits.lines_through`), refitted through those within 1.5 px.
    It holds the outline where :data:`ON_SIDE` of the rows lie on it, it opens downwards,
    no row of the whole component ends more than two strokes ``k`` beyond it (a ruler is
    narrow; the lit part of a fan beyond a shadow's edge is not), and a tenth of the rows
    end 2 px or more beyond it in 3 runs or more, each shorter than a stroke (ticks at
    intervals).
    Points more than ``spill`` + 1 px beyond it (the blur's spread, taken off the region
    at the end) are moved onto that distance.

    Returns:
        ``points``, or a changed copy where a side held some back.
    """
    x0, y0, w, h = cv2.boundingRect(points)
    if h < 40:
        return points
    bright = cv2.threshold(frame[y0 : y0 + h, x0 : x0 + w], level, 1, cv2.THRESH_BINARY)[1]
    lit = cv2.bitwise_and(bright, component[y0 : y0 + h, x0 : x0 + w])  # 0/1
    # how far in from the box's left and right each row's outermost lit pixel lies
    # (argmax stops at a bool row's first True; 0/1 bytes view as bools)
    first = lit.view(bool).argmax(1)
    inset = np.stack((first, cv2.flip(lit, 1).view(bool).argmax(1)))
    inset[:, lit[np.arange(h), first] == 0] = w  # rows with none lit: as far in as can be
    corner = h - 1 - inset[:, ::-1].argmin(1) - h // 20  # above the widest row: the floor's corner
    # ticks step the rows' ends out and back in; a side's own rows step outwards only
    # (speckle aside): steps back in of 2 px or more
    back = np.diff(inset, axis=1) >= 2
    start = h // 10
    held = points
    for side, sign in ((0, -1), (1, 1)):
        stop = int(corner[side])
        if stop - start < 12 or np.count_nonzero(back[side, start:stop]) < max(
            4, STEPS_BACK * (stop - start)
        ):
            continue
        line = _side_line(inset[side], start, stop, w, k)
        if line is None:
            continue
        a, b = line  # in the box, as an inset from the side's edge of it
        # the line in the frame, out by the blur's spill
        edge = a * (points[:, 1] - y0) + b - (spill + 1)
        x = np.where(sign > 0, x0 + w - 1 - edge, x0 + edge)
        out = sign * (points[:, 0] - x) > 0
        if out.any():
            held = held.copy() if held is points else held
            held[out, 0] = np.round(x[out]).astype(held.dtype)
    return held


def _side_line(
    inset: np.ndarray, start: int, stop: int, w: int, k: int
) -> tuple[float, float] | None:
    """A ruler's side, ``inset = a * row + b`` (each row's outermost lit pixel, in from the
    box's edge on that hand; ``w``: rows with none), read on rows ``start:stop``; None
    where the rows do not show one (see :func:`hold_to_sides`)."""
    rows = np.flatnonzero(inset < w)
    lo, hi = np.searchsorted(rows, (start, stop))
    ys, xs = rows[lo:hi].astype(np.float64), inset[rows[lo:hi]].astype(np.float64)
    if (line := _most_on(ys, xs)) is None:
        return None
    a, best = line
    if best.sum() < ON_SIDE * len(ys) or a >= -0.05:  # enough rows; opening downwards
        return None
    a, b = polyfit(ys[best], xs[best], 1)
    beyond = (a * rows + b) - inset[rows]  # how far out of the line each row ends
    if beyond.max() > 2 * k or not _ticks(beyond[lo:hi] >= 2, k):
        return None
    return float(a), float(b)


def _most_on(ys: np.ndarray, xs: np.ndarray) -> tuple[float, np.ndarray] | None:
    """The line ``x = a y + b`` that most of the points ``(ys, xs)`` lie on: through pairs
    of 24 picked (:func:`~usjepa.data.fits.lines_through`), refitted through the points
    on the best (a pair's line is rough); its slope ``a``, and which points lie within
    1.5 px of it (the caller fits them again). None where no pair gives a line."""
    slopes, _, on = lines_through(ys, xs, 24)
    if not len(slopes):
        return None
    best = on[int(np.argmax(on.sum(1)))]  # (a pair's own two points at least)
    a, b = polyfit(ys[best], xs[best], 1)
    return float(a), np.abs(xs - (a * ys + b)) <= 1.5


def _ticks(out: np.ndarray, k: int) -> bool:
    """Whether the rows standing out of a side (``out``, bool, top to bottom) are ticks:
    :data:`TICKED` of them at least, in 3 runs or more (ticks at intervals), none a
    stroke ``k`` long (a tick and its number span a few rows; the lit strip that a fan
    cropped by its image's border shows beyond the line of its upper side runs on)."""
    if out.mean() < TICKED:
        return False
    starts, ends = runs(out)
    return len(starts) >= 3 and int((ends - starts).max()) < k


def mark_sides(points: np.ndarray, component: np.ndarray, frame: np.ndarray, k: int) -> np.ndarray:
    """The outline ``points`` (``[N, 2]`` x, y) of the 0/255 ``component``, with the inner
    ends of a ruler's marks added where the ruler stands apart from the region's side.

    A ruler's marks are the small bright parts of the grey ``frame`` (above
    :data:`MARK_LEVEL`) outside the component, near its box (within four strokes ``k``):
    at most 3 px tall and 2 px to three strokes long (a tick, a dot, a tick with its
    number). On each hand, the inner end of each (the end towards the region) lies on the
    side's line: the line through pairs of them that most lie on
    (:func:`~usjepa.data.fits.lines_through`), refitted through those within 1.5 px. It
    is a ruler where :data:`MARKS` or more lie on it, it opens downwards (a slanted side;
    a vertical ruler beside a rectangle marks no side), its marks span a third of the
    component's height from within its top quarter, and the component's edge falls a
    stroke or more short of it in some mark's row (the tissue along the side is dark).
    Those marks' inner ends join the outline: the hull runs along the side, as the
    ruler draws it. (Their 1-2 px beyond the side are within the blur's spread, which is
    taken off the region at the end.)

    Returns:
        ``points``, or a longer copy where a ruler marked a side.
    """
    x0, y0, w, h = cv2.boundingRect(points)
    if h < 40:
        return points
    left, right = max(0, x0 - 4 * k), min(frame.shape[1], x0 + w + 4 * k)
    top = max(0, y0 - k)
    window = frame[top : y0 + h, left:right]
    near = cv2.dilate(component[top : y0 + h, left:right], np.ones((3, 3), np.uint8))
    lit = cv2.threshold(window, MARK_LEVEL, 255, cv2.THRESH_BINARY)[1]
    lit = cv2.bitwise_and(lit, cv2.bitwise_not(near))
    stats = cv2.connectedComponentsWithStatsWithAlgorithm(lit, 8, cv2.CV_16U, cv2.CCL_BBDT)[2]
    mx, my, mw, mh, area = stats[1:].T
    small = (mh <= 3) & (mw >= 2) & (mw <= 3 * k) & (area <= 2 * mw)
    middle = x0 + w / 2 - left
    rows = (my + (mh - 1) / 2).astype(np.float64)
    added = []
    for sign in (-1, 1):
        on_hand = small & (sign * (mx + (mw - 1) / 2 - middle) > 0)
        if np.count_nonzero(on_hand) < MARKS:
            continue
        ys = rows[on_hand]
        xs = (mx if sign > 0 else mx + mw - 1)[on_hand].astype(np.float64)
        on = _on_mark_line(ys, xs, sign, y0 - top, h)
        if on is None:
            continue
        ends = np.stack([xs[on] + left, ys[on] + top], 1)
        if _falls_short(component, ends, sign, k):
            added.append(np.round(ends).astype(points.dtype))
    return np.concatenate([points, *added]) if added else points


def _on_mark_line(
    ys: np.ndarray, xs: np.ndarray, sign: int, first: int, h: int
) -> np.ndarray | None:
    """Which marks' inner ends ``(ys, xs)`` lie on the line most of them lie on, where it
    makes a ruler along a slanted side on the hand ``sign`` of a component ``h`` rows
    tall from row ``first``; None where it makes none (see :func:`mark_sides`)."""
    if (line := _most_on(ys, xs)) is None:
        return None
    a, best = line
    if best.sum() < MARKS or sign * a < 0.1:  # too few; not opening downwards
        return None
    a, b = polyfit(ys[best], xs[best], 1)
    on_line = np.abs(xs - (a * ys + b)) <= 1.5
    marked = ys[on_line]
    if marked.min() > first + h / 4 or np.ptp(marked) < h / 3:
        return None
    return np.asarray(on_line)


def _falls_short(component: np.ndarray, ends: np.ndarray, sign: int, k: int) -> bool:
    """Whether the 0/255 ``component``'s edge on the hand ``sign`` falls a stroke ``k`` or
    more short of a mark's inner end (``ends``: ``[M, 2]`` x, y) in its row (a row
    without the component does)."""
    rows = component[ends[:, 1].astype(np.int64)] > 0
    width = rows.shape[1]
    edge = np.where(
        rows.any(1),
        width - 1 - rows[:, ::-1].argmax(1) if sign > 0 else rows.argmax(1),
        -width if sign > 0 else 2 * width,
    )
    return bool((sign * (ends[:, 0] - edge)).max() >= k)
