"""A duplex screen: the image above a Doppler spectrum, with text around both."""

import numpy as np

from usjepa.data.scan_region import detect_scan_region, iou, sector_mask


def _duplex(seed: int, table: bool) -> tuple[np.ndarray, np.ndarray]:
    """A 256 x 360 screen: a sector near the top, a wider and larger spectrum strip
    below it (the image's columns partly over it), and with ``table`` a header of text
    across the top joined to a panel of text down the right side (the blur joins a
    screen's lines of text into one such part, larger than the sector)."""
    rng = np.random.default_rng(seed)
    truth = sector_mask((256, 360), apex=(110, 30), angles=(-40, 40), radii=(0, 110))
    image = np.where(truth > 0, 60 * rng.gamma(2.0, 0.5, truth.shape), 0)
    t = np.arange(120, 330)  # the spectrum: a pulsing envelope above a baseline at row 240
    top = 240 - (25 + 45 * np.abs(np.sin(t / 18.0))).astype(int)
    rows = np.arange(256)[:, None]
    strip = (rows >= top[None, :]) & (rows <= 240)
    image[:, 120:330][strip] = 70 * rng.gamma(2.0, 0.5, int(strip.sum()))
    if table:  # text: characters 5 px wide, 2 px apart, in lines 3 px apart
        text = np.zeros((256, 360), bool)
        text[:15, :] = True
        text[15:165, 290:] = True
        glyphs = (np.arange(360)[None, :] % 7 < 5) & (np.arange(256)[:, None] % 11 < 8)
        image[text & glyphs] = rng.integers(120, 255, int((text & glyphs).sum()))
    return np.clip(image, 0, 255).astype(np.uint8), truth


def test_the_image_of_a_duplex_screen_is_found_above_its_spectrum():
    # the largest part, as chosen before: the spectrum (IoU 0.0), and with the text
    # around it the header joined to the panel (IoU 0.10)
    for table in (False, True):
        for seed in range(2):
            image, truth = _duplex(seed, table)
            found = detect_scan_region(image)
            assert iou(found, truth) > 0.9, (table, seed)
            assert not found[150:].any(), (table, seed)  # the spectrum's rows
