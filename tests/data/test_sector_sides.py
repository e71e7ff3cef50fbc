"""A phased sector's sides are fitted where the scanner drew them, with the depth scale's
ticks and markers that screens draw against a side."""

import numpy as np

from usjepa.data.scan_region import detect_scan_region, iou, sector_mask


def _marked_sector(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A 80 degree sector with speckle, and against its left side a depth scale: a tick
    every 60 px and a depth label beside the upper third (as on the gallery's clip)."""
    rng = np.random.default_rng(seed)
    apex, angles, radii = (128, 16), (-40, 40), (0, 225)
    truth = sector_mask((256, 256), apex=apex, angles=angles, radii=radii)
    image = np.where(truth > 0, 60 * rng.gamma(2.0, 0.5, truth.shape), 0)
    left = np.radians(angles[0])
    for r in range(50, 215, 60):  # ticks, just outside the side, touching it
        x, y = int(apex[0] + r * np.sin(left)) - 4, int(apex[1] + r * np.cos(left))
        image[y - 2 : y + 3, x - 3 : x + 4] = 200
    r = 0.3 * radii[1]  # a label ("5") beside the side
    x, y = int(apex[0] + r * np.sin(left)) - 10, int(apex[1] + r * np.cos(left))
    image[y - 6 : y + 6, x : x + 10] = 220
    return np.clip(image, 0, 255).astype(np.uint8), truth


def test_ticks_and_a_label_against_a_side_do_not_tilt_it():
    # the hull's sides, as fitted before: IoU 0.934, the upper side leaning out past the
    # apex; with the label only 0.936, the ticks only 0.952 (unmarked: 0.998). The ticks
    # still push the side out by a pixel or two where the opening leaves some of them
    for seed in range(3):
        image, truth = _marked_sector(seed)
        found = detect_scan_region(image)
        assert iou(found, truth) > 0.95, seed
        # the side runs to the apex, not out past it
        assert found[16:24, 124:133].any() and not found[16:30, :110].any(), seed
