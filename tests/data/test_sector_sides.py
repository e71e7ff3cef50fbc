"""A phased sector's sides are fitted where the scanner drew them, with the depth scale's
ticks and markers that screens draw against a side."""

import numpy as np

from usjepa.data.scan_region import detect_scan_region, iou, sector_mask

APEX, ANGLES, RADII = (128, 16), (-40, 40), (0, 225)


def _speckled_sector(seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """A 80 degree sector with speckle (float grey levels), its mask, its left side's
    direction (radians from straight down)."""
    rng = np.random.default_rng(seed)
    truth = sector_mask((256, 256), apex=APEX, angles=ANGLES, radii=RADII)
    image = np.where(truth > 0, 60 * rng.gamma(2.0, 0.5, truth.shape), 0)
    return image, truth, np.radians(ANGLES[0])


def _marked_sector(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The sector with a depth scale against its left side: a tick every 60 px and a depth
    label beside the upper third (as on the gallery's clip)."""
    image, truth, left = _speckled_sector(seed)
    apex, radii = APEX, RADII
    for r in range(50, 215, 60):  # ticks, just outside the side, touching it
        x, y = int(apex[0] + r * np.sin(left)) - 4, int(apex[1] + r * np.cos(left))
        image[y - 2 : y + 3, x - 3 : x + 4] = 200
    r = 0.3 * radii[1]  # a label ("5") beside the side
    x, y = int(apex[0] + r * np.sin(left)) - 10, int(apex[1] + r * np.cos(left))
    image[y - 6 : y + 6, x : x + 10] = 220
    return np.clip(image, 0, 255).astype(np.uint8), truth


def _detected(make):
    """(seed, detected mask, drawn mask) for three seeds of a marked sector."""
    for seed in range(3):
        image, truth = make(seed)
        yield seed, detect_scan_region(image), truth


def test_ticks_and_a_label_against_a_side_do_not_tilt_it():
    # the hull's sides, as fitted before: IoU 0.934, the upper side leaning out past the
    # apex; with the label only 0.936, the ticks only 0.952 (unmarked: 0.998). Opened with
    # a square, 0.957; with a disc, 0.968-0.971: the ticks still push the side out by a
    # pixel or two where the opening leaves some of them
    for seed, found, truth in _detected(_marked_sector):
        assert iou(found, truth) > 0.95, seed
        # the side runs to the apex, not out past it
        assert found[16:24, 124:133].any() and not found[16:30, :110].any(), seed


def _ruled_sector(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The same sector with a ruler along its whole left side: a tick every 12 px, 3 px
    out from the side (as the gallery's GE clip draws its depth scale)."""
    image, truth, left = _speckled_sector(seed)
    out = np.array([-np.cos(left), np.sin(left)])  # the side's outward normal
    for r in range(20, 220, 12):
        x, y = np.round(np.array(APEX) + r * np.array([np.sin(left), np.cos(left)]) + 5 * out)
        image[int(y) - 1 : int(y) + 2, int(x) - 2 : int(x) + 3] = 200
    return np.clip(image, 0, 255).astype(np.uint8), truth


def test_a_ruler_along_a_side_leaves_the_side_where_it_is():
    # opened with a square, as before, the ruler left a step at every tick on the slanted
    # side and the fitted side ran 4-8 px out along its whole length (IoU 0.970-0.973); a
    # disc only touches the side's line: 0-3 px (IoU 0.989-0.992)
    for seed, found, truth in _detected(_ruled_sector):
        assert iou(found, truth) > 0.98, seed
        rows = np.arange(40, 200, 20)
        off = (found[rows] > 0).argmax(1) - (truth[rows] > 0).argmax(1)
        assert np.abs(off).max() <= 3, (seed, off)


def _partly_lit_sector(seed: int, lit) -> tuple[np.ndarray, np.ndarray]:
    """An 84 degree sector of speckle, 320 x 256, lit only where ``lit(r, angle)`` holds
    (distance from the apex in px, direction in degrees from straight down), and its
    mask."""
    rng = np.random.default_rng(seed)
    h, w, apex = 256, 320, (160.0, 12.0)
    ys, xs = np.mgrid[:h, :w]
    r = np.hypot(xs - apex[0], ys - apex[1])
    angle = np.degrees(np.arctan2(xs - apex[0], ys - apex[1]))
    truth = sector_mask((h, w), apex=apex, angles=(-42, 42), radii=(0, 220))
    on = (truth > 0) & lit(r, angle)
    image = np.where(on, np.clip(rng.gamma(2.0, 30.0, (h, w)), 0, 255), 0)
    return image.astype(np.uint8), truth


def _fading_sector(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The sector with sides that show only in the near field (as in a cardiac window):
    lower down only its middle and its floor's middle are lit."""
    return _partly_lit_sector(
        seed,
        lambda r, a: (r <= 85) | (np.abs(a) <= 24) | ((r >= 195) & (np.abs(a) <= 32)),
    )


def test_sides_that_fade_below_the_near_field_are_read_off_it():
    # the hull's sides join the near field to the floor's lit middle, a chord inside each
    # side: IoU 0.87-0.88, the apex above the frame; read off the region's own edge,
    # where it runs along the side below the apex, 0.98-0.99
    for seed in range(4):
        image, truth = _fading_sector(seed)
        found = detect_scan_region(image)
        assert iou(found, truth) > 0.95, seed
        assert not found[:6].any(), seed  # the apex where it is, not above the frame


def _half_dark_sector(seed: int, middle: float) -> tuple[np.ndarray, np.ndarray]:
    """The sector dark on its left from the apex down (a window between the ribs), lit
    right of ``middle`` degrees and along its floor, whose band thins towards the left
    corner (as on the Mindray duplex screen)."""
    return _partly_lit_sector(
        seed, lambda r, a: (a >= middle) | (r >= 220 - np.interp(a, [-42, middle], [6, 30]))
    )


def test_a_side_dark_from_the_apex_down_is_turned_out_to_its_floor():
    # the dark side, read off the hull, ran from the near field's edge to the floor's
    # opened end, too steep, and met the other side above the apex: IoU 0.72-0.85, the
    # floor's left part outside; turned out until the region lies inside, 0.92-0.95
    for seed in range(3):
        for middle in (-8, 0, 10):
            image, truth = _half_dark_sector(seed, middle)
            found = detect_scan_region(image)
            assert iou(found, truth) > 0.9, (seed, middle)
            corner = truth[160:185, 10:45] > 0  # the left corner is in
            assert (found[160:185, 10:45] > 0)[corner].mean() > 0.5, (seed, middle)
