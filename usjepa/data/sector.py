"""A phased array's sector: drawing a known one, and redrawing a detected one whole.

A sector is the wedge of pixels between two edge directions from an apex, out to a
radius (an annular sector when the near field is cut). :func:`sector_mask` draws a known
one (a fixed acquisition geometry, or ground truth); :func:`complete_sector` redraws the
sector a scan-region hull outlines, from its sides, so that its dim far corners and the
apex an opening blunted come back (:mod:`usjepa.data.scan_region`, step 4).
"""

from __future__ import annotations

import cv2
import numpy as np

from usjepa.data.fits import polyfit, upper_quartile


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
    result[y0:y1, x0:x1] = inside.view(np.uint8) * np.uint8(255)
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
    width, rows = dx.shape[1], np.arange(dy.shape[0])
    reach = np.sqrt(np.maximum(outer * outer - dy[:, 0] ** 2, 0.0))
    start = np.ceil(np.maximum((sl * dy[:, 0] - 1e-9) / cl, -reach) - dx[0, 0])
    stop = np.floor(np.minimum((dy[:, 0] * sr + 1e-9) / cr, reach) - dx[0, 0])
    # five columns about each guessed end, both ends at once
    guesses = np.clip(np.stack([start, stop], 1), 0, width - 1).astype(np.int64)
    near = np.repeat(guesses, 5, axis=1) + np.tile(np.arange(-2, 3), 2)
    ok = _inside(dx[0, np.clip(near, 0, width - 1)], dy, edges, outer)
    ok &= (near >= 0) & (near < width)
    ok_start, ok_stop = ok[:, :5], ok[:, 5:]
    first = np.where(ok_start.any(1), near[rows, ok_start.argmax(1)], width)  # empty: past
    last = np.where(ok_stop.any(1), near[rows, 9 - ok_stop[:, ::-1].argmax(1)], -1)
    small = np.int16 if width < 1 << 15 else np.int32  # (cheaper to compare)
    columns: np.ndarray = np.arange(width, dtype=small)[None, :]
    begin: np.ndarray = first.astype(small)[:, None]
    end: np.ndarray = last.astype(small)[:, None]
    return np.asarray((columns >= begin) & (columns <= end))


def complete_sector(mask: np.ndarray, points: np.ndarray, region: np.ndarray, width: int) -> bool:
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
    only touches the side's line.
    """
    hull = np.zeros_like(mask)
    cv2.fillConvexPoly(hull, cv2.convexHull(points.astype(np.int32)), 255)
    _, top, _, rows = cv2.boundingRect(hull)
    height = rows - 1  # from the first row to the last
    if height < 16:
        return False
    widths = cv2.reduce(hull, 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S)[:, 0] // 255
    if widths[top + 2] > 0.3 * widths.max():
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
    (a_left, b_left), (a_right, b_right) = _side(ys, left), _side(ys, right)
    if a_right - a_left <= 0.05:  # sides that do not open downwards
        return False
    apex_y = (b_right - b_left) / (a_left - a_right)
    apex_x = a_left * apex_y + b_left
    if not top - 0.5 * height <= apex_y <= top + 2:
        return False  # sides that meet far above the top: no sector's apex
    left_deg, right_deg = np.degrees(np.arctan(a_left)), np.degrees(np.arctan(a_right))
    dx, dy = points[:, 0] - apex_x, points[:, 1] - apex_y
    direction = np.degrees(np.arctan2(dx, dy))
    between = (direction >= left_deg) & (direction <= right_deg)
    if not between.any():
        return False
    depth = float(np.hypot(dx, dy)[between].max())
    mask[:] = sector_mask(mask.shape, (apex_x, apex_y), (left_deg, right_deg), (0.0, depth))
    return True


def open_by_disc(binary: np.ndarray, width: int) -> np.ndarray:
    """``binary`` opened with OpenCV's disc (``MORPH_ELLIPSE``) ``width`` px across, odd.

    The same result as ``cv2.morphologyEx`` with that element, at about half its cost: a
    disc is the union of the rectangles its rows span (one per row width, as tall as the
    rows at least that wide), so eroding by it is eroding by each rectangle and keeping
    what all keep, and dilating is the union of the rectangles' dilations; OpenCV erodes
    by a rectangle in separable passes, by a disc pixel by pixel of it.
    """
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (width, width))
    rows = disc.sum(1)
    rectangles = [np.ones((int((rows >= r).sum()), int(r)), np.uint8) for r in np.unique(rows)]
    eroded = cv2.erode(binary, rectangles[0])
    for rectangle in rectangles[1:]:
        cv2.bitwise_and(eroded, cv2.erode(binary, rectangle), dst=eroded)
    opened = cv2.dilate(eroded, rectangles[0])
    for rectangle in rectangles[1:]:
        cv2.bitwise_or(opened, cv2.dilate(eroded, rectangle), dst=opened)
    return opened


def _side(ys: np.ndarray, xs: np.ndarray) -> tuple[float, float]:
    """A straight side ``x = a y + b`` through the edge points, refitted twice without
    the points further off it than most (ticks and markers stand out of a side, speckle
    dips into it, both in few rows)."""
    a, b = polyfit(ys, xs, 1)
    for _ in range(2):
        off = np.abs(xs - (a * ys + b))
        keep = off <= max(1.5, upper_quartile(off))
        a, b = polyfit(ys[keep], xs[keep], 1)
    return float(a), float(b)
