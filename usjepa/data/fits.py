"""Small least-squares fits, and the runs of a row of flags, for the scan-region
detector's hot path.

``np.polyfit`` and ``np.percentile`` are general: their checks and dispatch cost more than
the arithmetic on the few hundred edge points a detector fits, several times per frame.
These give the same numbers (to rounding) for the cases the detector needs.
"""

from __future__ import annotations

import numpy as np


def polyfit(x: np.ndarray, y: np.ndarray, degree: int) -> np.ndarray:
    """Least-squares polynomial of ``degree`` 1 or 2 through ``(x, y)``, coefficients
    highest power first (``np.polyfit`` order), from the normal equations in ``x`` centred
    on its mean (well conditioned at pixel coordinates)."""
    if degree not in (1, 2) or len(x) <= degree:
        raise ValueError(f"polyfit: degree {degree} on {len(x)} points; need 1 or 2 and more")
    m = float(x.mean())
    u = x - m
    uu = u * u
    if degree == 1:
        a = float(u @ y) / float(uu.sum())
        return np.array([a, float(y.mean()) - a * m])
    n, s2, s3, s4 = float(len(x)), float(uu.sum()), float(uu @ u), float(uu @ uu)
    t0, t1, t2 = float(y.sum()), float(u @ y), float(uu @ y)
    # the normal equations [[s4 s3 s2] [s3 s2 0] [s2 0 n]] (a b c) = (t2 t1 t0), by
    # Cramer's rule (the sum of u is 0 about the mean)
    det = s4 * s2 * n - s3 * s3 * n - s2 * s2 * s2
    a = (t2 * s2 * n - s3 * t1 * n - s2 * s2 * t0) / det
    b = (s4 * t1 * n - t2 * s3 * n + s2 * s3 * t0 - s2 * s2 * t1) / det
    c = (s4 * s2 * t0 - s3 * s3 * t0 + s3 * s2 * t1 - t2 * s2 * s2) / det
    # a (x - m)^2 + b (x - m) + c, expanded
    return np.array([a, b - 2 * a * m, a * m * m - b * m + c])


def percentile(values: np.ndarray, q: float) -> np.ndarray:
    """``np.percentile(values, q, axis=-1)`` (linear interpolation), exactly, from a
    partial sort: of a 1-D array a 0-d array, of each row of a 2-D one a value."""
    n = values.shape[-1]
    if n == 0:
        raise ValueError("percentile of no values")
    at = q / 100 * (n - 1)
    lo = int(at)
    hi = min(lo + 1, n - 1)
    part = np.partition(values, (lo, hi), axis=-1)
    low, high, t = part[..., lo].astype(np.float64), part[..., hi].astype(np.float64), at - lo
    # numpy's interpolation: from the nearer end, so that t = 0 or 1 gives a value exactly
    return np.asarray(low + (high - low) * t if t < 0.5 else high - (high - low) * (1 - t))


def lines_through(
    ys: np.ndarray, xs: np.ndarray, count: int = 40
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate straight edges ``x = a y + b`` through pairs of the edge points
    ``(ys, xs)`` (about ``count`` of them, evenly spaced, paired at least 5 rows apart; a
    line that half the points lie on is among them, roughly, from 16 on), and which
    points lie on each (within 1.5 px): the line most of an edge's points lie on is its
    side, however many points stand off it on one hand (ticks, markers, fading rows),
    which a least-squares fit, even a trimmed one, leans towards.

    Returns:
        ``(slopes, offsets, on)``: ``[L]`` each, and ``on`` ``[L, N]`` bool.
    """
    pick = np.arange(0, len(ys), max(1, len(ys) // count))
    p, q = np.meshgrid(pick, pick, indexing="ij")
    apart = ys[p] + 4 < ys[q]
    p, q = p[apart], q[apart]
    slopes = (xs[q] - xs[p]) / (ys[q] - ys[p])
    offsets = xs[p] - slopes * ys[p]
    on = np.abs(xs[None, :] - (slopes[:, None] * ys[None, :] + offsets[:, None])) <= 1.5
    return slopes, offsets, on


def runs(flags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The runs of True in a 1-D bool array: their starts and their ends (one past)."""
    edges = np.flatnonzero(np.diff(flags, prepend=False, append=False))
    return edges[::2], edges[1::2]
