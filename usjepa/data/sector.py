"""A phased array's sector: drawing a known one, and redrawing a detected one whole.

A sector is the wedge of pixels between two edge directions from an apex, out to a
radius (an annular sector when the near field is cut). :func:`sector_mask` draws a known
one (a fixed acquisition geometry, or ground truth); :func:`complete_sector` redraws the
sector a scan-region hull outlines, from its sides, so that its dim far corners and the
apex an opening blunted come back (:mod:`usjepa.data.scan_region`, step 4).
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from usjepa.data.fits import lines_through, percentile

#: the share of a sector's edge rows below its apex that must lie on the side read off its
#: hull; fewer, and the hull's side is a chord across dim rows (see :func:`_edge_side`)
EDGE_SUPPORT = 0.5
#: the share of a sector's region beyond one side (and not the other) past which that
#: side was read too far in, the share of rows whose outermost pixel may stay beyond it
#: when it is turned out, and how far (degrees) the sector so widened may lean from
#: straight down (see :func:`_take_in`)
BEYOND = 0.01
LEFT_OUT = 0.02
SYMMETRY = 5.0


def sector_mask(
    shape: tuple[int, int],
    apex: tuple[float, float],
    angles: tuple[float, float],
    radii: tuple[float, float],
) -> np.ndarray:
    """Mask of a known sector (a phased array's wedge, or an annular sector when the
    near field is cut): pixels within ``radii`` of ``apex`` whose direction from it lies
    between the two edge ``angles``. For a fixed acquisition geometry, where the scanner's
    sector is known rather than detected, and for drawing ground truth.

    Args:
        shape: ``(height, width)`` of the frame.
        apex: ``(x, y)`` of the sector's apex in pixels; it may lie outside the frame.
        angles: ``(left, right)`` edge directions in degrees from straight down,
            negative towards the image's left (a symmetric 90 degree sector: ``(-45, 45)``).
        radii: ``(inner, outer)`` distance from the apex in pixels (``inner`` 0 for a
            wedge that starts at its apex).

    Returns:
        ``[H, W]`` uint8 mask, 255 inside.
    """
    (left, right), (inner, outer) = angles, radii
    if not -180 < left < right < 180 or not 0 <= inner < outer:
        raise ValueError(
            f"sector angles {angles} must rise from left to right within (-180, 180) and "
            f"radii {radii} must satisfy 0 <= inner < outer"
        )
    # only pixels within ``outer`` of the apex can be inside: test that box alone
    result = np.zeros(shape, np.uint8)
    y0, y1 = (
        max(0, int(np.floor(apex[1] - outer))),
        min(shape[0], int(np.ceil(apex[1] + outer)) + 1),
    )
    x0, x1 = (
        max(0, int(np.floor(apex[0] - outer))),
        min(shape[1], int(np.ceil(apex[0] + outer)) + 1),
    )
    if y0 >= y1 or x0 >= x1:
        return result
    # pixel centres tested exactly, by cross products with the two edge directions
    # (direction (sin a, cos a) for an angle a from straight down)
    dx = np.arange(x0, x1, dtype=np.float64)[None, :] - apex[0]
    dy = np.arange(y0, y1, dtype=np.float64)[:, None] - apex[1]
    edges = tuple(float(f(np.radians(a))) for a in (left, right) for f in (np.sin, np.cos))
    sl, cl, sr, cr = edges
    if inner == 0 and min(cl, cr) > 0.01:  # a wedge opening downwards: one run per row
        inside = _by_runs(dx, dy, edges, outer)
    else:
        past_left = sl * dy - cl * dx <= 1e-9  # right of the left edge (on it counts)
        before_right = dx * cr - dy * sr <= 1e-9  # left of the right edge
        wedge = past_left & before_right if right - left <= 180 else past_left | before_right
        dist2 = dx * dx + dy * dy
        inside = wedge & (dist2 <= outer * outer) & (dist2 >= inner * inner)
    np.multiply(inside.view(np.uint8), np.uint8(255), out=result[y0:y1, x0:x1])
    return result


def _inside(dx: np.ndarray, dy: np.ndarray, edges: tuple[float, ...], outer: float) -> np.ndarray:
    """:func:`sector_mask`'s tests of a wedge from its apex (offsets ``dx``, ``dy``)."""
    sl, cl, sr, cr = edges
    past_left, before_right = sl * dy - cl * dx <= 1e-9, dx * cr - dy * sr <= 1e-9
    return np.asarray(past_left & before_right & (dx * dx + dy * dy <= outer * outer))


def _by_runs(dx: np.ndarray, dy: np.ndarray, edges: tuple[float, ...], outer: float) -> np.ndarray:
    """:func:`_inside` over offsets ``dx`` ``[1, W]`` and ``dy`` ``[H, 1]`` from the apex
    of a wedge whose both edges point below the horizon, at a fraction of the cost. Each
    test is monotone along a row, so a row's inside is one run: its ends are solved for in
    closed form, then settled by the exact tests on the columns around them (so that the
    pixels on an edge come out as the tests draw them), and the runs filled."""
    sl, cl, sr, cr = edges
    width, y, x0 = dx.shape[1], dy[:, 0], dx[0, 0]
    reach = np.sqrt(np.maximum(outer * outer - y * y, 0.0))
    start = np.ceil(np.maximum((sl * y - 1e-9) / cl, -reach) - x0)
    stop = np.floor(np.minimum((y * sr + 1e-9) / cr, reach) - x0)
    # five columns about each guessed end, both ends at once: [H, 2 ends, 5]
    guesses = np.minimum(np.maximum(np.stack([start, stop], 1), 0), width - 1).astype(np.int64)
    near = guesses[:, :, None] + _AROUND
    ok = _inside(dx[0, np.minimum(np.maximum(near, 0), width - 1)], dy[:, :, None], edges, outer)
    ok &= (near >= 0) & (near < width)
    rows = np.arange(len(y))
    ok_start, ok_stop = ok[:, 0], ok[:, 1]
    first = np.where(ok_start.any(1), near[rows, 0, ok_start.argmax(1)], width)  # empty: past
    last = np.where(ok_stop.any(1), near[rows, 1, 4 - ok_stop[:, ::-1].argmax(1)], -1)
    # b <= c <= e as one unsigned comparison: c - b wraps past every run's length below b
    small = (np.int16, np.uint16) if width < 1 << 15 else (np.int32, np.uint32)
    columns = np.arange(width, dtype=small[0])[None, :]
    length = np.maximum(last - first + 1, 0).astype(small[1])[:, None]
    offset = (columns - first.astype(small[0])[:, None]).view(small[1])
    return np.asarray(offset < length)


#: the columns about a run's guessed end that :func:`_by_runs` tests
_AROUND = np.arange(-2, 3)


def complete_sector(
    mask: np.ndarray,
    points: np.ndarray,
    region: np.ndarray,
    width: int,
    hull: np.ndarray | None = None,
) -> bool:
    """Redraw a phased array's sector whole (in place); False when the region is no sector.

    ``points``: the region's outline, before any mirroring. A hull of them whose top is
    narrow, and whose sides meet above it within half its height, is a sector (the
    opening has blunted its apex; a convex array's face is wide). Its far corners are often
    too dim to count as signal, so the hull cuts them off: the sector is redrawn from the
    hull's two sides (straight lines through rows 10-40 % of its height, above the far
    corners; they meet at the apex) out to the outline's deepest point between them.
    The sides are read off the hull of ``region`` (the 0/255 map the outline is of)
    opened with a disc ``width`` px across (odd, so that the opening shifts
    nothing) and fitted with the rows off the line left out: a ruler's ticks or a depth
    marker glued to a side tilt the hull's whole side towards them; the opening takes most
    of them off, the fit the rows where some stays. A disc, not a square: on a slanted
    side a square slides its corner into each tick and leaves a step there, where a disc
    only touches the side's line. Where a side fades below the near field, the hull's
    side is a chord inside it: the region's own edge gives it (:func:`_edge_side`). Where
    the near field is dark on one hand, the side read there is too steep and leaves the
    floor's end out: it is turned out to hold the region (:func:`_take_in`). ``hull``:
    the outline's hull where the caller has drawn it (read only), else drawn here.
    """
    if hull is None:
        hull = np.zeros_like(mask)
        cv2.fillConvexPoly(hull, cv2.convexHull(points.astype(np.int32)), 255)
    _, top, across, rows = cv2.boundingRect(hull)
    height = rows - 1  # from the first row to the last
    if height < 16:
        return False
    near_top = np.count_nonzero(hull[top + 2])
    if near_top > 0.3 * across:  # wide against the box, so against its widest row too
        return False
    widths = cv2.reduce(hull, 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S)[:, 0] // 255
    if near_top > 0.3 * widths.max():
        return False  # a wide top: a linear or convex array's face
    ys = np.arange(top + height // 10, top + (2 * height) // 5)
    sides = hull  # unless the opening leaves something
    # opened within the region's box and a disc's radius around it (the same result:
    # nothing outside it is set, or erodes what is inside; a disc costs per pixel)
    x, y, w, h = cv2.boundingRect(region)
    r = width // 2
    x0, y0 = max(0, x - r), max(0, y - r)
    box = region[y0 : y + h + r, x0 : x + w + r]
    opened = open_by_disc(box, width)
    found, _ = cv2.findContours(opened, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE, offset=(x0, y0))
    if found:
        sides = np.zeros_like(mask)
        cv2.fillConvexPoly(sides, cv2.convexHull(np.concatenate(found)), 255)
    inside = sides[ys] > 0
    ys = ys[inside.any(1)]
    inside = inside[inside.any(1)]
    if len(ys) < 4:
        return False
    left = inside.argmax(1).astype(np.float64)
    right = (hull.shape[1] - 1 - inside[:, ::-1].argmax(1)).astype(np.float64)
    (a_left, a_right), (b_left, b_right) = _sides(ys, np.stack([left, right]))
    # where the hull's side is a chord across dim rows, the region's own edge below the
    # apex (from the band's top, a twentieth down; the near field is brightest)
    start, stop = top + height // 20, top + (2 * height) // 5  # above the frame's last row
    below, at = region[start:stop:2], np.arange(start, stop, 2)  # every other row
    first = (below > 0).argmax(1)  # an empty row reads as the frame's border: left out
    last = below.shape[1] - 1 - (cv2.flip(below, 1) > 0).argmax(1)
    a_left, b_left = _edge_side(below, at, first, (a_left, b_left), -1)
    a_right, b_right = _edge_side(below, at, last, (a_right, b_right), 1)
    if a_right - a_left <= 0.05:  # sides that do not open downwards
        return False
    apex_y = (b_right - b_left) / (a_left - a_right)
    apex_x = a_left * apex_y + b_left
    if not top - 0.5 * height <= apex_y <= top + 2:
        return False  # sides that meet far above the top: no sector's apex
    apex = (float(apex_x), float(apex_y))
    angles = (float(np.degrees(np.arctan(a_left))), float(np.degrees(np.arctan(a_right))))
    drawn = _out_to_floor(mask.shape, points, apex, angles)
    if drawn is None:
        return False
    lines = ((a_left, b_left), (a_right, b_right))
    wider = _take_in(region, drawn, apex, angles, lines, top, height)
    widened = None if wider is None else _out_to_floor(mask.shape, points, *wider)
    mask[:] = drawn if widened is None else widened
    return True


def _out_to_floor(
    shape: tuple[int, ...],
    points: np.ndarray,
    apex: tuple[float, float],
    angles: tuple[float, float],
) -> np.ndarray | None:
    """The sector from ``apex`` between the edge ``angles`` out to the deepest of the
    outline ``points`` between them; None where none lies between."""
    dx, dy = points[:, 0] - apex[0], points[:, 1] - apex[1]
    direction = np.degrees(np.arctan2(dx, dy))
    between = (direction >= angles[0]) & (direction <= angles[1])
    if not between.any():
        return None
    depth = float(np.hypot(dx, dy)[between].max())
    return sector_mask((shape[0], shape[1]), apex, angles, (0.0, depth))


def _take_in(
    region: np.ndarray,
    drawn: np.ndarray,
    apex: tuple[float, float],
    angles: tuple[float, float],
    lines: tuple[tuple[float, float], ...],
    top: int,
    height: int,
) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """A sector whose one side was read too far in, widened: its apex and edge angles,
    or None where the ``drawn`` sector holds ``region`` (the 0/255 map it was read off).

    A sector whose near field is dark on one hand (a cardiac window between the ribs)
    shows that side only at its floor: the region's edge there falls inwards from the
    apex, the side read off it is too steep, and it meets the other side above the apex.
    A share :data:`BEYOND` of the region then lies beyond that side (and not beyond the
    other). Where the sides met above the hull's ``top``, the apex is put back at the
    region's top (its middle there); the far side is kept as its line ``x = a y + b``
    runs at 40 % of the depth, and the near side turned out to the outermost pixels of
    the rows below a tenth of the depth (beside the apex they point every way), all but
    a share :data:`LEFT_OUT` of them (speckle, a tick). The widened sector must be
    symmetric about the vertical through its apex within :data:`SYMMETRY` degrees, as a
    phased array's whole B-mode sector is, else None: a bar or a label glued to a side,
    taken in so, leans it far to that side. (A zoomed view need not be symmetric, so no
    side is ever made so.)
    """
    area = cv2.countNonZero(region)
    beyond = cv2.subtract(region, drawn)
    if cv2.countNonZero(beyond) <= BEYOND * area:
        return None  # the common case: the sector holds its region
    ys, xs = np.divmod(np.flatnonzero(beyond), beyond.shape[1])
    direction = np.degrees(np.arctan2(xs - apex[0], ys - apex[1]))
    out = (np.count_nonzero(direction < angles[0]), np.count_nonzero(direction > angles[1]))
    if (out[0] > BEYOND * area) == (out[1] > BEYOND * area):
        return None  # beyond both sides, or neither: no one side read too far in
    near = 0 if out[0] > BEYOND * area else 1
    if apex[1] < top:  # where the sides met, above the hull: the steep side crossed early
        _, first, _, _ = cv2.boundingRect(region)
        apex = (float(np.median(np.flatnonzero(region[first : first + 3].any(0)))), float(first))
    # each row's outermost pixel on the near hand, in the rows below a tenth of the depth
    start = int(apex[1] + 0.1 * height) + 1
    low = region[start:] > 0
    rows = np.flatnonzero(low.any(1))
    if not len(rows):
        return None
    low, rows = low[rows], rows + start
    ends = low.argmax(1) if near == 0 else low.shape[1] - 1 - low[:, ::-1].argmax(1)
    direction = np.sort(np.degrees(np.arctan2(ends - apex[0], rows - apex[1])))
    leave = int(LEFT_OUT * len(direction))
    turned = float(direction[leave] if near == 0 else direction[-1 - leave])
    a, b = lines[1 - near]
    y = top + 0.4 * height  # the far side where it was read
    kept = float(np.degrees(np.arctan2(a * y + b - apex[0], y - apex[1])))
    left, right = (turned, kept) if near == 0 else (kept, turned)
    if not -90 < left < right < 90 or abs(left + right) > SYMMETRY:
        return None
    return apex, (left, right)


def open_by_disc(binary: np.ndarray, width: int) -> np.ndarray:
    """``binary`` opened with OpenCV's disc (``MORPH_ELLIPSE``) ``width`` px across, odd.

    The same result as ``cv2.morphologyEx`` with that element, at about half its cost: a
    disc is the union of the rectangles its rows span (one per row width, as tall as the
    rows at least that wide), so eroding by it is eroding by each rectangle and keeping
    what all keep, and dilating is the union of the rectangles' dilations; OpenCV erodes
    by a rectangle in separable passes, by a disc pixel by pixel of it.
    """
    rectangles = _disc_rectangles(width)
    eroded = cv2.erode(binary, rectangles[0])
    for rectangle in rectangles[1:]:
        cv2.bitwise_and(eroded, cv2.erode(binary, rectangle), dst=eroded)
    opened = cv2.dilate(eroded, rectangles[0])
    for rectangle in rectangles[1:]:
        cv2.bitwise_or(opened, cv2.dilate(eroded, rectangle), dst=opened)
    return opened


@functools.lru_cache(maxsize=8)
def _disc_rectangles(width: int) -> tuple[np.ndarray, ...]:
    """The rectangles OpenCV's disc ``width`` px across spans, one per row width, as tall
    as the rows at least that wide (read-only; built once per width)."""
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (width, width))
    rows = disc.sum(1)
    rectangles = tuple(np.ones((int((rows >= r).sum()), int(r)), np.uint8) for r in np.unique(rows))
    for rectangle in rectangles:
        rectangle.flags.writeable = False
    return rectangles


def _edge_side(
    band: np.ndarray, ys: np.ndarray, xs: np.ndarray, line: tuple[float, float], sign: int
) -> tuple[float, float]:
    """A sector's side off its region's own edge, where the hull's side is a chord.

    ``band``: the region's rows ``ys`` below the apex; ``xs``: its outermost column in
    each on the side ``sign`` (-1 left, 1 right); ``line``: that side read off the hull
    (``x = a y + b``). A cardiac window often shows its sides only in the bright near
    field: lower down they fade into the black. The region's edge then runs along the
    side from the apex down and leaves it for good, falling inwards, and the hull joins
    the near field to the floor's end by a chord inside the side. So where fewer than
    :data:`EDGE_SUPPORT` of the edge rows lie on the hull's side, the line that most of
    them lie on (within 1.5 px; drawn through pairs of them, the outermost of those
    within 5 % of the most) is the side, if it lies outside, if the rows on it run
    unbroken (ticks drawn against a side touch a line at intervals all along it), and if
    some of them lie outside the hull's side with the region filling the wedge between
    the two lines there (a ruler or a marker's line drawn beside the side, glued to it at
    a point, does not). The frame's border is no side.
    """
    keep = (xs > 1) & (xs < band.shape[1] - 2)
    ys, xs = ys[keep], xs[keep].astype(np.float64)
    a, b = line
    if len(ys) < 8 or np.count_nonzero(np.abs(xs - (a * ys + b)) <= 1.5) >= EDGE_SUPPORT * len(ys):
        return line
    band = band[keep]  # (only here: most sides stop above)
    slopes, offsets, on = lines_through(ys, xs)
    support = on.sum(1)
    fits = (support >= 0.95 * support.max()) & (sign * slopes > 0.05)  # opening downwards
    if not fits.any():
        return line
    bottom = ys[-1]
    reach = sign * (slopes * bottom + offsets)  # how far out each line is at the band's end
    rows = np.flatnonzero(on[np.flatnonzero(fits)[reach[fits].argmax()]])
    if rows[-1] - rows[0] + 1 - len(rows) > 0.25 * len(rows):  # broken: ticks
        return line
    a_edge, b_edge = _side(ys[rows], xs[rows])
    if sign * (a_edge * bottom + b_edge) <= sign * (a * bottom + b):
        return line
    # the region fills the wedge between the two lines where the edge is the outer: a
    # ruler or a marker's line drawn beside the side, glued to it at a point, leaves a gap
    edge = xs[rows].astype(int)
    hull = np.clip(np.round(a * ys[rows] + b), 0, band.shape[1] - 1).astype(int)
    out = sign * (edge - hull) > 0
    spans = [band[r, min(u, v) : max(u, v) + 1] for r, u, v in zip(rows[out], edge[out], hull[out])]
    size = sum(len(span) for span in spans)
    filled = sum(np.count_nonzero(span) for span in spans)
    return (a_edge, b_edge) if size and filled >= 0.9 * size else line


def _side(ys: np.ndarray, xs: np.ndarray) -> tuple[float, float]:
    """A straight side ``x = a y + b`` through the edge points (:func:`_sides`)."""
    (a,), (b,) = _sides(ys, xs[None, :])
    return float(a), float(b)


def _sides(ys: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Straight sides ``x = a y + b``, one per row of ``xs`` ``[S, N]`` (the edge points'
    columns on the rows ``ys``), each refitted twice without the points further off it
    than most (beyond the upper quartile of all its points' distances; ticks and markers
    stand out of a side, speckle dips into it, both in few rows). Least squares with 0/1
    weights, all sides at once (a sector's two cost about one)."""
    y = ys.astype(np.float64)
    weight = np.ones(xs.shape)
    for refit in range(3):
        n = weight.sum(1)
        mean = (weight @ y) / n
        centred = y[None, :] - mean[:, None]  # about each fit's own (weighted) mean
        a = (weight * centred * xs).sum(1) / (weight * centred * centred).sum(1)
        b = (weight * xs).sum(1) / n - a * mean
        if refit < 2:
            off = np.abs(xs - (a[:, None] * y[None, :] + b[:, None]))
            weight = (off <= np.maximum(1.5, percentile(off, 75))[:, None]).astype(np.float64)
    return a, b
