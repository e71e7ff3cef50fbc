"""Real Philips EPIQ 7 screens captured through a USB frame grabber
(``tests/fixtures/grabber_screens``, CC BY-SA 4.0): a dark grey screen, not black, with a
header bar across it, text, a grey-scale bar, depth dots along the sector's side and a
caliper, against the sectors we drew."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from usjepa.data.ingest import build_dataset
from usjepa.data.ingest.builder import resize_short
from usjepa.data.scan_region import detect_scan_region, iou
from usjepa.data.synthetic import draw_patient, render_frame

GRABBER = Path(__file__).resolve().parents[1] / "fixtures/grabber_screens"


def _screen(name: str) -> tuple[np.ndarray, np.ndarray]:
    """A fixture screen as ``usjepa data build`` reads it (grey, short side 256) and its
    drawn sector at that size."""
    row = pd.read_csv(GRABBER / "index.csv").set_index("screen").loc[f"screens/{name}.png"]
    colour = cv2.imread(str(GRABBER / f"screens/{name}.png"))
    frame = resize_short(cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY), 256)
    drawn = cv2.imread(str(GRABBER / row["mask"]), cv2.IMREAD_GRAYSCALE)
    return frame, cv2.resize(drawn, frame.shape[::-1], interpolation=cv2.INTER_NEAREST)


def test_the_dark_grey_of_a_captured_screen_and_its_header_bar_are_no_scan_data():
    # the screen is grey level 16, not black; the detector took all of it for signal,
    # and then the header bar across the top for a piece of the sector: the whole screen
    frame, truth = _screen("philips_epiq7_echo_pen_in_air")
    assert np.median(frame) >= 14
    mask = detect_scan_region(frame)
    assert iou(mask, truth) >= 0.95
    assert not mask[:12].any()  # the header bar and the preset's text beside the apex


def test_only_the_sector_is_kept_where_tissue_fills_part_of_it():
    # tissue in the sector's upper left only: what the detector keeps lies in the sector,
    # and the screen's header, text, grey-scale bar and depth dots stay out
    frame, truth = _screen("philips_epiq7_adult_echo_tissue")
    mask = detect_scan_region(frame) > 0
    inside = (mask & (truth > 0)).sum() / mask.sum()
    assert inside >= 0.97
    assert mask.sum() >= 0.25 * (truth > 0).sum()


@pytest.mark.parametrize("kind", ["convex", "phased", "linear"])
def test_a_dithered_dark_grey_background_is_the_frames_black(kind):
    # a grabber's grey is not always one level: some captures dither it over 8 and 9
    rng = np.random.default_rng([7, len(kind)])
    image, truth = render_frame(draw_patient(256, rng, kind), 0, rng)
    grey = image.copy()
    background = (image <= 2) & (truth == 0)
    grey[background] = 8 + rng.integers(0, 2, int(background.sum()))
    on_black = iou(detect_scan_region(image), truth)
    assert iou(detect_scan_region(grey), truth) >= on_black - 0.02


def test_a_built_frame_of_a_captured_screen_shows_no_header(tmp_path):
    # built with the defaults, everything outside the detected region is written black:
    # the header bar (date and time of the exam), the preset's text and the grey-scale bar
    # are gone; with the whole screen taken for signal they were all written as they are
    raw = tmp_path / "raw"
    raw.mkdir()
    for path in (GRABBER / "screens").iterdir():
        shutil.copy(path, raw / path.name)
    report = build_dataset(raw, tmp_path / "corpus", "grabber", size=256, progress=False)
    manifest = pd.read_parquet(report.manifest)
    assert len(manifest) == 2
    for frame_path in manifest["frame_path"]:
        frame = cv2.imread(str(tmp_path / "corpus" / frame_path), cv2.IMREAD_GRAYSCALE)
        h, w = frame.shape
        assert frame[:12].max() <= 8  # the header bar is light grey (about 80) with text
        assert frame[: h // 6, : w // 6].max() <= 8  # the preset's text below it
        # the grey-scale bar at the right (white at its top)
        assert frame[int(0.16 * h) : int(0.41 * h), int(0.94 * w) : int(0.965 * w)].max() <= 8


@pytest.mark.parametrize("level", [0, 5, 16, 32, 33, 128, 254, 255])
def test_a_blank_frame_of_any_grey_gives_a_mask(level):
    # a uniform frame is padding at its own level: a light one (a white export, a
    # corrupt frame) once read as a screen's grey ground past the top of a byte and failed
    frame = np.full((64, 80), level, np.uint8)
    mask = detect_scan_region(frame)
    assert mask.shape == frame.shape and mask.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 255}
    if level <= 32:  # black, or a screen's grey with nothing on it: no scan region
        assert not mask.any()
