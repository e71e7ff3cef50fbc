"""Scanner-screen overlays: text, depth ruler, grey-scale bar, ECG trace, calipers.

Everything except calipers and the focus marker is drawn only outside the scan region,
as on a real display; these are what scan-region detection must learn to ignore.
"""

from __future__ import annotations

import cv2
import numpy as np

from usjepa.data.synthetic.geometry import ScanGeometry

_PRESETS = ("ABD", "THY", "BREAST", "CARD", "OB", "MSK", "VASC", "LIVER", "RENAL")


def draw_outside(
    image: np.ndarray, inside: np.ndarray, geom: ScanGeometry, rng: np.random.Generator
) -> None:
    """Draw text, ruler, grey bar and (sometimes) an ECG trace outside the scan region."""
    size = image.shape[0]
    layer = np.zeros_like(image)
    font, scale = cv2.FONT_HERSHEY_PLAIN, size / 200.0
    lines = [
        f"{rng.uniform(2, 15):.1f}MHz",
        f"D{rng.uniform(3, 18):.1f}cm",
        f"G{int(rng.integers(30, 80))}",
        str(rng.choice(_PRESETS)),
    ]
    y = int(size * 0.05)
    cv2.putText(layer, lines[0] + " " + lines[1], (2, y), font, scale, 230, 1, cv2.LINE_AA)
    cv2.putText(layer, lines[3], (int(size * 0.72), y), font, scale, 200, 1, cv2.LINE_AA)
    cv2.putText(layer, lines[2], (2, size - 3), font, scale, 180, 1, cv2.LINE_AA)
    _, right = geom.lateral_extent()
    if right + 4 < size - 2:  # depth ruler with major/minor ticks
        x = int(min(size - 3, right + 3))
        top, bottom = int(size * 0.12), int(size * 0.9)
        for i, ty in enumerate(range(top, bottom, max(3, size // 40))):
            cv2.line(layer, (x, ty), (x + (3 if i % 5 == 0 else 1), ty), 210, 1)
    if rng.random() < 0.8:  # grey-scale bar
        h0, h1 = int(size * 0.2), int(size * 0.55)
        ramp = np.linspace(255, 10, h1 - h0).astype(np.uint8)[:, None]
        layer[h0:h1, 1:4] = ramp
    if geom.kind == "phased" or rng.random() < 0.2:
        _draw_ecg(layer, size, rng)
    out = ~inside
    image[out] = np.maximum(image[out], layer[out])


def _draw_ecg(layer: np.ndarray, size: int, rng: np.random.Generator) -> None:
    """A PQRST-like trace along the bottom of the screen."""
    base = size - int(size * 0.06)
    xs = np.arange(2, size - 2)
    period = rng.uniform(0.3, 0.5) * size
    phase = (xs + rng.uniform(0, period)) % period / period
    wave = (
        2.0 * np.exp(-(((phase - 0.5) / 0.015) ** 2))
        - 0.5 * np.exp(-(((phase - 0.47) / 0.01) ** 2))
        + 0.4 * np.exp(-(((phase - 0.75) / 0.05) ** 2))
        + 0.2 * np.exp(-(((phase - 0.2) / 0.04) ** 2))
    )
    ys = (base - wave * size * 0.03).astype(np.int32)
    pts = np.stack([xs, ys], axis=1).reshape(-1, 1, 2)
    cv2.polylines(layer, [pts], False, 170, 1, cv2.LINE_AA)


def draw_inside(image: np.ndarray, inside: np.ndarray, rng: np.random.Generator) -> None:
    """Calipers at random positions (independent of any label) and a focal-zone marker."""
    size = image.shape[0]
    ys, xs = np.nonzero(inside)
    if len(ys) == 0:
        return
    if rng.random() < 0.35:
        idx = rng.integers(0, len(ys), 2)
        arm = max(2, size // 64)
        for y, x in zip(ys[idx], xs[idx]):
            cv2.line(image, (int(x) - arm, int(y)), (int(x) + arm, int(y)), 255, 1)
            cv2.line(image, (int(x), int(y) - arm), (int(x), int(y) + arm), 255, 1)
        if rng.random() < 0.5:
            (x0, x1), (y0, y1) = xs[idx], ys[idx]
            n = 8
            for t in np.linspace(0.15, 0.85, n):
                px, py = int(x0 + t * (x1 - x0)), int(y0 + t * (y1 - y0))
                image[py, px] = 230
    # focal-zone marker at the edge of the scan region
    row = int(rng.uniform(0.3, 0.7) * size)
    cols = np.nonzero(inside[row])[0]
    if len(cols):
        c = int(cols[-1]) - 1
        back = c - max(2, size // 50)
        tri = np.array([[c, row], [back, row - 2], [back, row + 2]])
        cv2.fillPoly(image, [tri.astype(np.int32)], 240)
