"""A screen's header text that the scan-region detector's blur joined onto the image.

Scanners print the patient's name and ID, the date and the preset in a header above the
image, and some draw it right against the image's top edge or over its top corners. The
detector blurs the frame before it thresholds it (speckle nulls must not be holes), and
the blur joins such text onto the image: the region's hull then takes in the text, with
a wedge of the screen beside the image, and the pixels that carry a patient's identity
stay inside the region that ``usjepa data build`` keeps. Three shapes give the text away,
each in the frame's own pixels, not the blurred map:

- a row of black across the region with a little above it: the gap between the header
  and the image (:func:`drop_above_gap`);
- no gap, but a jump: rows of short lit runs (glyphs, words) right above the first row
  with a long one, lit over half the region's width (an image's top edge, cut straight
  by its border; :func:`drop_above_top`);
- a bump on a side in the region's top rows, a few rows tall and bright, that reaches
  out past every row below it (text beside the image's top corners; a fan's and a
  sector's sides only widen downwards; :func:`drop_beside_top`).

:func:`drop_header_text` applies all three (:mod:`usjepa.data.scan_region`, step 2).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import cv2
import numpy as np

from usjepa.data.fits import runs

__all__ = ["drop_above_gap", "drop_above_top", "drop_beside_top", "drop_header_text"]

#: header text above a black gap row: at most this share of the component's area, over
#: less than this share of its columns (a probe's face above a black near field spans
#: nearly all of them)
GAP_SHARE = 0.15
GAP_COVER = 0.8
#: how far (share of the frame's height) below the region's top a header's text may
#: reach; the share of the region's width a run must span to end the header (the image's
#: top row, or the region's own top); how many times longer than any lit run above it the
#: image's top row's longest run is (glyphs and words are short; an area resize mixes the
#: text's last row with the image's first, so not more), and the share of the region's
#: width just below that it spans
HEADER_ROWS = 0.06
LONG = 0.25
JUMP = 3
WIDE = 0.5
#: text beside the image's top corners: looked for in the region's top rows (share of
#: the frame's height), at most this tall (share of the height), reaching out at least
#: this many px past every row below it, and drawn at least this bright
SIDE_BAND = 0.1
TEXT_HEIGHT = 0.05
EXCESS = 3
BRIGHT = 150


class _Box(NamedTuple):
    """A 0/255 component's bounding box and the sum of each of its rows (255 a pixel):
    what the three rules share, read once."""

    x0: int
    top: int
    width: int
    height: int
    counts: np.ndarray


def _box(component: np.ndarray) -> _Box | None:
    x0, top, width, height = cv2.boundingRect(component)
    if not width:
        return None
    inside = component[top : top + height, x0 : x0 + width]
    counts = cv2.reduce(inside, 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S)[:, 0]  # 255 a pixel
    return _Box(x0, top, width, height, counts)


def _top_rows(image: np.ndarray, box: _Box, share: float, level: int) -> np.ndarray:
    """Where ``image`` is above ``level`` (0/1), in the ``box``'s columns and first rows:
    ``share`` of the image's height, at least 4 rows, at most the box's."""
    rows = min(box.height, max(4, int(share * image.shape[0])))
    inside = image[box.top : box.top + rows, box.x0 : box.x0 + box.width]
    return cv2.threshold(inside, level, 1, cv2.THRESH_BINARY)[1]


def drop_header_text(component: np.ndarray, frame: np.ndarray, level: int, grow: int) -> None:
    """Clear, in place, a screen's header text joined onto the 0/255 ``component`` (the
    region's signal, blurred ``grow`` px) in any of the three ways the module describes;
    ``frame`` is the grey frame, black at most ``level``."""
    box = _box(component)
    for rule in (drop_above_gap, drop_above_top):
        if box is None:
            return
        if rule(component, frame, level, grow, box):  # the box is the component's no more
            box = _box(component)
    if box is not None:
        drop_beside_top(component, frame, box)


def drop_above_gap(
    component: np.ndarray, frame: np.ndarray, level: int, grow: int, box: _Box | None = None
) -> bool:
    """Clear, in place, what lies above the lowest row of ``frame`` that is black (at
    most ``level``) across the whole column span of the 0/255 ``component``, where that
    is a screen's header: under :data:`GAP_SHARE` of the area over under
    :data:`GAP_COVER` of the columns. The blur (``grow`` px) joined text to an image
    whose top edge lies just below a black row; that row and the blur's spill stay.
    ``box``: the component's, if known. Returns whether anything was cleared."""
    if (box := box or _box(component)) is None:
        return False
    x0, top, width, height, counts = box
    # rows whose component above (but the spill) is under the share: a gap lies in them
    covered = counts.cumsum()
    reach = min(height, int(covered.searchsorted(GAP_SHARE * covered[-1])) + grow + 2)
    lit = cv2.threshold(frame[top : top + reach, x0 : x0 + width], level, 1, cv2.THRESH_BINARY)[1]
    lit_counts = cv2.reduce(lit, 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S)[::-1, 0]
    if lit_counts[last := int(lit_counts.argmin())]:
        return False  # no black row
    gap = top + reach - 1 - last  # the lowest
    if gap - grow + 1 <= top:
        return False  # the blur's spill above the image: nothing above it to clear
    if component[: max(0, gap - grow - 1), x0 : x0 + width].any(0).mean() >= GAP_COVER:
        return False  # a probe's face above a black near field
    component[: max(0, gap - grow + 1)] = 0
    return True


def drop_above_top(
    component: np.ndarray, frame: np.ndarray, level: int, grow: int, box: _Box | None = None
) -> bool:
    """Clear, in place, header text drawn right on an image's straight top edge. In the
    ``component``'s first rows (:data:`HEADER_ROWS` of the frame's height), the first row
    of ``frame`` with a lit run (above ``level``, within the component's columns) of
    :data:`LONG` of the component's width ends the header. It is the image's top if lit
    rows lie above it, its longest run is :data:`JUMP` times every run above it and spans
    :data:`WIDE` of the component's width just below; what lies above it goes, but for
    the blur's spill (``grow`` px). A fan's face and a sector's apex widen row by row, so
    no row above them is lit or their runs grow without a jump. ``box``: the
    component's, if known. Returns whether anything was cleared."""
    if (box := box or _box(component)) is None:
        return False
    x0, top, width, height, counts = box
    h = frame.shape[0]
    lit = _top_rows(frame, box, HEADER_ROWS, level)
    _, row, _, found = cv2.boundingRect(_runs_of(lit, int(np.ceil(LONG * width))))
    if not found or not row or not cv2.countNonZero(lit[:row]):
        return False  # no long run in the top rows, or nothing lit above it
    below = min(top + row + grow + 1, h - 1) - top  # the component's width just below
    wide = counts[below] / 255 if below < height else 0
    # first with the row's lit count, an upper bound of its longest run: most frames (a
    # sector's apex) are ruled out before the run is measured
    for measure in (cv2.countNonZero, _longest_run):
        longest = measure(lit[row])
        if longest < WIDE * wide or cv2.countNonZero(_runs_of(lit[:row], longest // JUMP + 1)):
            return False  # too narrow, or runs above as long as a third of it or longer
    component[: max(0, top + row - grow)] = 0
    return True


def _runs_of(lit: np.ndarray, length: int) -> np.ndarray:
    """The 0/1 map ``lit`` eroded along its rows: 1 where a run of at least ``length``
    lit pixels ends (nothing is lit past the map's ends)."""
    kernel, anchor = _row_kernel(length), (length - 1, 0)
    return cv2.erode(lit, kernel, anchor=anchor, borderType=cv2.BORDER_CONSTANT, borderValue=0)


@functools.cache
def _row_kernel(length: int) -> np.ndarray:
    return np.ones((1, length), np.uint8)


def _longest_run(row: np.ndarray) -> int:
    """The longest run of nonzero pixels in a row."""
    starts, ends = runs(row != 0)
    return int((ends - starts).max()) if len(starts) else 0


def drop_beside_top(component: np.ndarray, frame: np.ndarray, box: _Box | None = None) -> bool:
    """Cut back, in place, text drawn beside an image's top corners: on each side of the
    ``component``'s first rows (:data:`SIDE_BAND` of the frame's height), the rows whose
    outermost pixel lies :data:`EXCESS` px or more past every row below them in the band,
    where they are at most :data:`TEXT_HEIGHT` of the height and ``frame`` is
    :data:`BRIGHT` somewhere in what they reach out with (text is drawn light). They are
    cut back to the rows below: a fan's, a sector's and a rectangle's sides never reach
    further out above than below, down to the region's widest row. ``box``: the
    component's, if known. Returns whether anything was cut."""
    if (box := box or _box(component)) is None:
        return False
    x0, top, width, height, counts = box
    h = frame.shape[0]
    band = _top_rows(component, box, SIDE_BAND, 0)
    n = len(band)
    up = band[::-1].view(np.bool_)  # bottom row first; as bool, argmax is several times faster
    left, inward = up.argmax(1), up[:, ::-1].argmax(1)  # each row's first pixel from each side
    lit = counts[n - 1 :: -1] > 0
    if not (full := bool(lit.all())):  # an empty row reaches nowhere, and is cut nowhere
        left[~lit], inward[~lit] = -1, -1
    # how far each row reaches out past the least reach at or below it
    out_l = np.maximum.accumulate(left) - left
    out_r = np.maximum.accumulate(inward) - inward
    if full and out_l.max() < EXCESS and out_r.max() < EXCESS:
        return False
    left, right = left[::-1], width - 1 - inward[::-1]
    out_l, out_r, lit = out_l[::-1], out_r[::-1], lit[::-1]
    left_below, right_below = left + out_l, right - out_r
    out_left, out_right = lit & (out_l >= EXCESS), lit & (out_r >= EXCESS)
    cut = False
    for out, first, last in (  # each side's rows that reach out, and the columns they add
        (out_right, right_below + 1, right + 1),
        (out_left, left, left_below),
    ):
        rows = np.flatnonzero(out)
        if not 0 < len(rows) <= TEXT_HEIGHT * h:
            continue
        pieces = [(top + r, x0 + int(first[r]), x0 + int(last[r])) for r in rows]
        if max(int(frame[y, a:b].max()) for y, a, b in pieces) >= BRIGHT:
            for y, a, b in pieces:
                component[y, a:b] = 0
            cut = True
    return cut
