"""The detector's fast paths (fits, morphology, labels, sector drawing) give what numpy's
and OpenCV's own, or every pixel tested, do."""

import cv2
import numpy as np
import pytest

from usjepa.data.fits import percentile, polyfit
from usjepa.data.outline import label_parts, labelled, large_parts, outline_points
from usjepa.data.sector import _sides, complete_sector, open_by_disc, sector_mask


@pytest.mark.parametrize("degree", [1, 2])
def test_polyfit_matches_numpy_on_edge_points(degree):
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(degree + 2, 300))
        x = np.sort(rng.choice(np.arange(512.0), n, replace=False))  # pixel rows or columns
        y = np.round(0.002 * x**2 - 0.7 * x + 80 + rng.normal(0, 2, n))
        ours, reference = polyfit(x, y, degree), np.polyfit(x, y, degree)
        np.testing.assert_allclose(ours, reference, rtol=1e-9, atol=1e-9)


def test_polyfit_refuses_what_it_cannot_fit():
    with pytest.raises(ValueError, match="degree 3"):
        polyfit(np.arange(10.0), np.arange(10.0), 3)
    with pytest.raises(ValueError, match="on 2 points"):
        polyfit(np.arange(2.0), np.arange(2.0), 2)


def test_percentile_of_each_row_is_numpys_exactly():
    rng = np.random.default_rng(2)
    for shape in [(1, 1), (5, 2), (17, 300), (40, 57)]:
        pixels = rng.integers(0, 30, shape).astype(np.uint8)  # dark rows: many ties
        for q in (75, 90):
            np.testing.assert_array_equal(percentile(pixels, q), np.percentile(pixels, q, axis=1))


@pytest.mark.parametrize("width", [3, 9, 19, 27])
def test_open_by_disc_is_opencvs_opening_with_its_disc(width):
    rng = np.random.default_rng(width)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (width, width))
    for _ in range(20):
        shape = (int(rng.integers(30, 200)), int(rng.integers(30, 200)))
        noise = rng.integers(0, 256, shape).astype(np.uint8)
        binary = np.where(cv2.blur(noise, (7, 7)) > 128, 255, 0).astype(np.uint8)
        binary[: shape[0] // 3, : shape[1] // 2] = 255  # a block touching the frame's border
        expected = cv2.morphologyEx(binary, cv2.MORPH_OPEN, disc)
        np.testing.assert_array_equal(open_by_disc(binary, width), expected)


def test_large_parts_on_8_and_16_bit_label_counts():
    binary = np.zeros((64, 64), np.uint8)
    binary[5:40, 5:40] = 255  # 1225 px
    binary[50:60, 5:20] = 255  # 150 px: at least 10 % of the largest
    binary[50:53, 50:53] = 255  # 9 px: not
    n, labels = label_parts(binary, 3)
    assert labels.dtype == np.uint16 and n == 4
    big = large_parts(labels, n, 0.1)
    assert sorted(labels[[10, 55], [10, 10]].tolist()) == sorted(big.tolist())
    # counted on every other row (each part spans 3 rows or more): the same parts
    np.testing.assert_array_equal(large_parts(labels, n, 0.1, step=2), big)
    # OpenCV's default labelling numbers the parts alike
    np.testing.assert_array_equal(labels, cv2.connectedComponents(binary, connectivity=8)[1])
    # more parts than 8-bit labels hold: counted by bincount, with the same answer
    many = np.zeros((64, 640), np.uint8)
    many[::3, ::3] = 255
    n, labels = label_parts(many, 1)
    assert n > 256
    counts = np.bincount(labels.ravel(), minlength=n)[1:]
    np.testing.assert_array_equal(large_parts(labels, n, 0.1), 1 + np.flatnonzero(counts >= 0.1))


def _robust_side(ys, xs):
    """A side fitted as the detector means it: numpy's line through all points, then
    twice through those within max(1.5 px, the upper quartile of all distances) of it."""
    a, b = np.polyfit(ys, xs, 1)
    for _ in range(2):
        off = np.abs(xs - (a * ys + b))
        keep = off <= max(1.5, np.percentile(off, 75))
        a, b = np.polyfit(ys[keep], xs[keep], 1)
    return a, b


def test_sides_are_fitted_together_as_each_alone():
    rng = np.random.default_rng(4)
    for _ in range(100):
        ys = np.arange(int(rng.integers(20, 60)), int(rng.integers(80, 140)), dtype=np.int64)
        lines = [(-0.8, 120.0), (0.75, 130.0)]
        xs = np.stack([np.round(a * ys + b + rng.normal(0, 0.7, len(ys))) for a, b in lines])
        ticks = rng.choice(len(ys), 6, replace=False)  # ticks standing out of the left side
        xs[0, ticks] -= rng.integers(3, 9, 6)
        a, b = _sides(ys, xs)
        for side in range(2):
            np.testing.assert_allclose((a[side], b[side]), _robust_side(ys, xs[side]), atol=1e-9)


def test_labelled_is_each_part_as_a_0_255_map_in_16_and_32_bit_labels():
    rng = np.random.default_rng(5)
    for dtype in (np.uint16, np.int32):
        labels = rng.integers(0, 300 if dtype == np.uint16 else 70_000, (40, 50)).astype(dtype)
        for label in (0, int(labels[3, 4]), int(labels.max())):
            expected = np.where(labels == label, 255, 0).astype(np.uint8)
            np.testing.assert_array_equal(labelled(labels, label), expected)


def test_label_parts_falls_back_to_32_bit_labels_where_16_bits_may_not_hold_them():
    binary = np.zeros((300, 300), np.uint8)  # 90,000 possible 1 x 1 parts
    binary[::2, ::2] = 255
    n, labels = label_parts(binary, 1)
    assert labels.dtype == np.int32 and n == 150 * 150 + 1


def _sector_by_pixel(shape, apex, angles, outer):
    """Every pixel centre tested: inside the two edges and within ``outer`` of the apex."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    dx, dy = xx - apex[0], yy - apex[1]
    (sl, cl), (sr, cr) = [(np.sin(np.radians(a)), np.cos(np.radians(a))) for a in angles]
    inside = (sl * dy - cl * dx <= 1e-9) & (dx * cr - dy * sr <= 1e-9)
    return np.where(inside & (dx * dx + dy * dy <= outer * outer), 255, 0).astype(np.uint8)


def test_sector_mask_by_runs_draws_every_pixel_as_the_pixel_tests_do():
    rng = np.random.default_rng(3)
    cases = [((256, 341), (170.0, 0.0), (-45.0, 45.0), 250.0)]  # edges through pixel centres
    cases += [((64, 64), (32.0, -10.0), (-89.0, 89.0), 60.0)]  # nearly flat edges
    cases += [((80, 90), (5.0, 3.0), (10.0, 60.0), 70.0)]  # both edges to one side
    cases += [((50, 50), (300.0, -200.0), (-60.0, -20.0), 400.0)]  # apex far outside
    for _ in range(300):
        shape = (int(rng.integers(8, 200)), int(rng.integers(8, 200)))
        apex = (
            float(rng.uniform(-50, shape[1] + 50)),
            float(rng.choice([0.0, rng.uniform(-60, 20)])),
        )
        left = float(rng.choice([-45.0, rng.uniform(-88, 40)]))
        right = float(rng.choice([45.0, rng.uniform(left + 0.5, 88.5)]))
        cases.append((shape, apex, (left, right), float(rng.uniform(3, 300))))
    for shape, apex, angles, outer in cases:
        drawn = sector_mask(shape, apex, angles, (0.0, outer))
        np.testing.assert_array_equal(drawn, _sector_by_pixel(shape, apex, angles, outer))


def test_complete_sector_reads_a_hull_drawn_by_its_caller_as_its_own():
    rng = np.random.default_rng(6)
    for left, right in ((-40.0, 40.0), (-30.0, 45.0), (-60.0, 20.0)):
        region = sector_mask((256, 300), (150.0, 12.0), (left, right), (0.0, 230.0))
        region[180:, : 150 + int(rng.integers(-20, 20))] = 0  # a dim far corner lost
        points = outline_points(region)
        hull = np.zeros_like(region)
        cv2.fillConvexPoly(hull, cv2.convexHull(points), 255)
        drawn_here, given = np.zeros_like(region), np.zeros_like(region)
        assert complete_sector(drawn_here, points, region, 19)
        assert complete_sector(given, points, region, 19, hull.copy())
        np.testing.assert_array_equal(given, drawn_here)
    # a wide top (a convex or linear array's face) is refused either way
    box = np.zeros((256, 300), np.uint8)
    box[20:240, 40:260] = 255
    points = outline_points(box)
    assert not complete_sector(np.zeros_like(box), points, box, 19)
    assert not complete_sector(np.zeros_like(box), points, box, 19, box.copy())
