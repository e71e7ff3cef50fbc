import json

import numpy as np
import pandas as pd
import pytest

from usjepa.data.synthetic import LESION_CLASSES, draw_patient, render_frame
from usjepa.data.synthetic.geometry import GEOMETRY_KINDS


def _frame(seed: int, label: int, kind: str | None = None, size: int = 128):
    rng = np.random.default_rng(seed)
    return render_frame(draw_patient(size, rng, kind), label, rng)


def test_same_seed_same_image_and_different_seed_differs():
    a, ma = _frame(3, 1)
    b, mb = _frame(3, 1)
    c, _ = _frame(4, 1)
    assert np.array_equal(a, b) and np.array_equal(ma, mb)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("kind", GEOMETRY_KINDS)
def test_mask_is_one_region_with_speckle_inside_and_black_background(kind):
    image, mask = _frame(11, 0, kind)
    inside = mask > 0
    assert 0.3 < inside.mean() < 0.9
    # speckle: high local variance inside the region; log-compressed Rayleigh has a std of
    # about 5.6 dB, i.e. tens of grey levels
    assert image[inside].std() > 15
    # background holds only overlays: mostly black
    assert (image[~inside] == 0).mean() > 0.85
    # overlays exist outside the region (text, ruler, bar)
    assert (image[~inside] > 100).sum() > 20


def test_sector_geometries_are_fans_and_linear_is_a_rectangle():
    _, lin = _frame(5, 0, "linear")
    ys, xs = np.nonzero(lin)
    box = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
    assert len(ys) / box > 0.98
    for kind in ("convex", "phased"):
        _, fan = _frame(5, 0, kind)
        rows = np.nonzero(fan.any(1))[0]
        top_w, bottom_w = fan[rows[0] + 2].sum(), fan[rows[-1] - 8].sum()
        assert bottom_w > 1.5 * top_w  # widens with depth


def test_brightness_is_matched_across_classes():
    means = {label: [] for label in range(len(LESION_CLASSES))}
    for seed in range(30):
        for label in means:
            image, mask = _frame(seed, label, size=96)
            means[label].append(image[mask > 0].mean())
    per_class = np.array([np.mean(v) for v in means.values()])
    assert per_class.max() - per_class.min() < 8.0, per_class


def test_lesions_change_the_image_where_they_are():
    # same patient and noise, lesion vs none: the difference is local, not global
    rng_p = np.random.default_rng(0)
    patient = draw_patient(128, rng_p, "linear")
    cyst, mask = render_frame(patient, 1, np.random.default_rng(9))
    inside = mask > 0
    # a cyst is anechoic: some neighbourhood in the region is much darker than the median
    import cv2

    local = cv2.blur(cyst.astype(np.float32), (7, 7))
    assert np.percentile(local[inside], 1) < 0.35 * np.median(local[inside])


def test_corpus_manifest_and_files(corpus_dir):
    table = pd.read_parquet(corpus_dir / "manifest.parquet")
    assert len(table) == 48
    for col in ("frame_path", "dataset", "source_kind", "patient_id", "split", "scan_mask"):
        assert col in table
    assert (corpus_dir / table["frame_path"][0]).exists()
    assert (corpus_dir / table["scan_mask"][0]).exists()
    assert table["patient_id"].nunique() == 12


def test_task_is_ultrabench_layout_with_patient_splits(task_dir):
    tv = json.loads((task_dir / "train_val.json").read_text())
    te = json.loads((task_dir / "test.json").read_text())
    assert len(tv) == 24 * 6 and len(te) == 8 * 6
    assert {"image", "scan_mask", "label", "patient"} <= set(tv[0])
    assert not {r["patient"] for r in tv} & {r["patient"] for r in te}
    counts = np.bincount([r["label"] for r in tv], minlength=len(LESION_CLASSES))
    assert counts.min() == counts.max()  # balanced
    assert (task_dir / tv[0]["image"]).exists() and (task_dir / tv[0]["scan_mask"]).exists()
