"""A screen's header text that the detector's blur joins onto the image (the patient's
name and ID drawn right on its top edge, or beside its top corners) is left out of the
scan region, so that ``usjepa data build`` blacks it out; the rules that find it leave a
fan, a sector and a rectangle with no text alone."""

import cv2
import numpy as np
import pytest

import usjepa.data.header as header
from usjepa.data.header import _longest_run, _runs_of, drop_beside_top, drop_header_text
from usjepa.data.scan_region import detect_scan_region, iou
from usjepa.data.sector import sector_mask

SHAPE = (256, 400)


def _scan(region: np.ndarray, seed: int = 0) -> np.ndarray:
    """Speckle inside ``region``, black outside."""
    speckle = np.random.default_rng(seed).gamma(2.0, 40.0, region.shape).clip(12, 255)
    return np.where(region > 0, speckle, 0).astype(np.uint8)


def _text(rows_end: int, *words: tuple[str, int]) -> np.ndarray:
    """White header text (``(word, first column)``) whose glyphs end on row ``rows_end``."""
    text = np.zeros(SHAPE, np.uint8)
    for word, x in words:
        cv2.putText(text, word, (x, rows_end), cv2.FONT_HERSHEY_SIMPLEX, 0.35, 255, 1)
    return text


def _fan(top: int) -> np.ndarray:
    """A convex fan whose top an image border cuts straight at row ``top``."""
    fan = sector_mask(SHAPE, (200.0, -70.0), (-40.0, 40.0), (0.0, 310.0))
    fan[:top] = 0
    return fan


def _no_rules(monkeypatch):
    monkeypatch.setattr(header, "drop_above_top", lambda *a: None)
    monkeypatch.setattr(header, "drop_beside_top", lambda *a: None)


@pytest.mark.parametrize("rules", [True, False])
def test_header_text_right_on_the_image_top_is_left_out(monkeypatch, rules):
    # name and ID printed on the rows right above the image, no black row between; the
    # ID runs past the image's top corner
    fan = _fan(12)
    text = _text(11, ("DOE^JANE", 150), ("MRN 0012345", 215))
    assert (text[11] > 0).any() and not (text[12:] > 0).any()
    frame = np.maximum(_scan(fan), text)
    if not rules:
        _no_rules(monkeypatch)
    mask = detect_scan_region(frame)
    leaked = np.count_nonzero(mask[text > 0])
    if rules:
        assert leaked == 0
        assert iou(mask, fan) > 0.97
    else:  # what the rules are for: the blur joins the text on, the hull takes it in
        assert leaked > 20


@pytest.mark.parametrize("rules", [True, False])
def test_header_text_beside_the_image_top_corner_is_left_out(monkeypatch, rules):
    # the image runs to the frame's top; the ID is drawn over its top right corner and on
    # past its side, a few rows down
    fan = _fan(0)
    text = _text(10, ("MRN 0012345", 230))
    outside = (text > 0) & (fan == 0)
    assert np.count_nonzero(outside) > 50
    frame = np.maximum(_scan(fan), text)
    if not rules:
        _no_rules(monkeypatch)
    mask = detect_scan_region(frame)
    leaked = outside & (mask > 0)
    beyond = cv2.distanceTransform((fan == 0).astype(np.uint8), cv2.DIST_L2, 3)[leaked]
    if rules:  # cut back to the rows below, whose edge the blur widened: glyphs by the side stay
        assert np.count_nonzero(leaked) < 50 and beyond.max() < 8
        assert iou(mask, fan) > 0.96
    else:
        assert np.count_nonzero(leaked) > 60 and beyond.max() > 10


def _sector() -> np.ndarray:
    return sector_mask(SHAPE, (200.0, 8.0), (-42.0, 42.0), (0.0, 240.0))


def _face() -> np.ndarray:
    apex = (200.0, -60.0)
    return cv2.subtract(
        sector_mask(SHAPE, apex, (-35.0, 35.0), (0.0, 300.0)),
        sector_mask(SHAPE, apex, (-35.0, 35.0), (0.0, 100.0)),
    )


def _rectangle() -> np.ndarray:
    region = np.zeros(SHAPE, np.uint8)
    region[20:230, 90:310] = 255
    return region


@pytest.mark.parametrize("shape", [_sector, _face, _rectangle, lambda: _fan(0), lambda: _fan(12)])
def test_regions_with_no_text_are_left_alone(shape):
    region = shape()
    component = cv2.dilate(region, np.ones((5, 5), np.uint8))  # as the blur spreads it
    kept = component.copy()
    drop_header_text(kept, _scan(region), 2, 2)
    np.testing.assert_array_equal(kept, component)


def test_a_bump_is_cut_only_where_it_is_drawn_bright():
    region = _fan(0)
    component = region.copy()
    component[3:9, 260:300] = 255  # a few rows reaching out past the side below them
    for level, cut in ((255, True), (90, False)):  # text is light; tissue is not that
        frame = _scan(region)
        frame[3:9, 260:300] = level
        kept = component.copy()
        drop_beside_top(kept, frame)
        assert (np.count_nonzero(kept[3:9, 280:300]) == 0) == cut
        np.testing.assert_array_equal(kept[9:], component[9:])  # nothing below it moves


def test_run_lengths_match_a_plain_count():
    # the longest run of a row, and the rows that hold a run of a given length (runs that
    # touch the map's ends included: nothing is lit past them)
    rng = np.random.default_rng(1)
    lit = (rng.random((40, 97)) < rng.random((40, 1))).astype(np.uint8)
    lit[0], lit[1], lit[2, :] = 0, 1, 0
    lit[2, 96] = lit[3, 0] = 1
    expected = []
    for row in lit:
        best = run = 0
        for on in row:
            run = run + 1 if on else 0
            best = max(best, run)
        expected.append(best)
    assert [_longest_run(row) for row in lit] == expected
    for length in (1, 2, 5, 20, 97, 98):
        held = _runs_of(lit, length).any(1)
        np.testing.assert_array_equal(held, np.array(expected) >= length)
