"""Sets stored stretched (4:3 scans saved as squares, as some public echo sets are): the
scan region detected at square pixels when the stretch is given, frame, clip and build."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from usjepa.data.ingest import build_dataset
from usjepa.data.ingest.task_builders import make_task
from usjepa.data.scan_region import detect_scan_region, detect_scan_region_clip, iou
from usjepa.data.synthetic import draw_patient, render_frame

CAPTURE = Path(__file__).resolve().parents[1] / "fixtures/grabber_screens"
NAME = "philips_epiq7_echo_pen_in_air"  # a real phased sector, lit to its floor


def _stored(size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, float]:
    """The real capture (640 x 480) resized to ``size`` (w, h) regardless of its shape,
    its drawn sector alike, and the stretch: width over height of what a pixel shows."""
    grey = cv2.imread(str(CAPTURE / f"screens/{NAME}.png"), cv2.IMREAD_GRAYSCALE)
    drawn = cv2.imread(str(CAPTURE / f"masks/{NAME}.png"), cv2.IMREAD_GRAYSCALE)
    frame = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    truth = cv2.resize(drawn, size, interpolation=cv2.INTER_NEAREST)
    return frame, truth, (grey.shape[1] / size[0]) / (grey.shape[0] / size[1])


def test_a_real_sector_stored_square_is_found_when_its_stretch_is_given():
    frame, truth, stretch = _stored((256, 256))  # 4:3 squashed into a square
    assert stretch == pytest.approx(4 / 3)
    plain = iou(detect_scan_region(frame), truth)
    given = iou(detect_scan_region(frame, aspect=stretch), truth)
    assert plain < 0.92  # a circular floor drawn on an elliptical one (0.89)
    assert given >= 0.95  # (0.96; 0.97 at the capture's own shape)


def test_a_frame_stored_flattened_is_heightened_not_narrowed():
    # stretched the other way (a pixel shows less width than height): detected on the
    # frame made taller, where the opening and the fits keep the detail the frame has
    frame, truth, stretch = _stored((341, 192))
    assert stretch == pytest.approx(0.75, abs=0.01)
    plain = iou(detect_scan_region(frame), truth)
    given = iou(detect_scan_region(frame, aspect=stretch), truth)
    assert given >= plain + 0.03  # (0.87 -> 0.93; narrowed to square pixels: 0.80)


def test_a_clip_stored_stretched_is_found_when_its_stretch_is_given():
    patient = draw_patient(256, np.random.default_rng(1), "phased")
    frames, truth = [], None
    for i in range(6):  # the same heart, speckle drawn anew each frame
        image, truth = render_frame(patient, 0, np.random.default_rng([1, i]))
        frames.append(cv2.resize(image, (256, 192), interpolation=cv2.INTER_AREA))
    truth = cv2.resize(truth, (256, 192), interpolation=cv2.INTER_NEAREST)
    clip = np.stack(frames)
    assert iou(detect_scan_region_clip(clip), truth) < 0.8  # (0.68)
    assert iou(detect_scan_region_clip(clip, aspect=0.75), truth) >= 0.95  # (0.99)


def test_build_detects_at_the_pixel_aspect_it_is_given(tmp_path):
    frame, truth, stretch = _stored((256, 256))
    raw = tmp_path / "raw"
    raw.mkdir()
    cv2.imwrite(str(raw / "a4c.png"), frame)
    scores = {}
    for aspect in (1.0, stretch):
        out = tmp_path / f"corpus_{aspect:.2f}"
        build_dataset(
            raw, out, "stretched", progress=False, pseudonymize=False, pixel_aspect=aspect
        )
        row = pd.read_parquet(out / "manifest.parquet").iloc[0]
        assert (row["width"], row["height"]) == (256, 256)  # frames written as stored
        mask = cv2.imread(str(out / row["scan_mask"]), cv2.IMREAD_GRAYSCALE)
        scores[aspect] = iou(mask, truth)
    assert scores[1.0] < 0.92 and scores[stretch] >= 0.95


@pytest.mark.parametrize("aspect", [0.0, -1.0, 20.0])
def test_build_refuses_a_pixel_aspect_that_is_no_pixel_shape(tmp_path, aspect):
    (tmp_path / "raw").mkdir()
    with pytest.raises(ValueError, match=r"pixel_aspect .*\(1.33 for 4:3 scans stored square\)"):
        build_dataset(tmp_path / "raw", tmp_path / "out", "x", progress=False, pixel_aspect=aspect)


def test_make_task_detects_at_the_pixel_aspect_it_is_given(tmp_path):
    frame, truth, stretch = _stored((256, 256))
    src = tmp_path / "labelled"
    src.mkdir()
    rows = [("a.png", "a4c", "train_val"), ("b.png", "plax", "test")]
    for name, _, _ in rows:
        cv2.imwrite(str(src / name), frame)
    labels = tmp_path / "labels.csv"
    pd.DataFrame(rows, columns=["image", "label", "split"]).to_csv(labels, index=False)
    scores = {}
    for aspect in (1.0, stretch):
        out = make_task(
            src, tmp_path / f"task_{aspect:.2f}", labels, progress=False,
            pseudonymize=False, blank_outside=False, pixel_aspect=aspect,
        )  # fmt: skip
        record = json.loads((out / "train_val.json").read_text())[0]
        image = cv2.imread(str(out / record["image"]), cv2.IMREAD_GRAYSCALE)
        assert image.shape == (256, 256)  # written as stored
        mask = cv2.imread(str(out / record["scan_mask"]), cv2.IMREAD_GRAYSCALE)
        scores[aspect] = iou(mask, truth)
    assert scores[1.0] < 0.92 and scores[stretch] >= 0.95


def test_make_task_refuses_a_pixel_aspect_that_is_no_pixel_shape(tmp_path):
    (tmp_path / "labelled").mkdir()
    with pytest.raises(ValueError, match=r"pixel_aspect .*\(1.33 for 4:3 scans stored square\)"):
        make_task(tmp_path / "labelled", tmp_path / "out", progress=False, pixel_aspect=0.0)
