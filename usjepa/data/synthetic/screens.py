"""Full scanner screens around a scan: the vendor interface that hospital exports carry.

A hospital's export is not a cropped fan: it is the whole display. :func:`compose_screen`
places a scan image (synthetic, or a real frame with its drawn region) inside one of
three interface layouts and returns the colour screen with the scan region's mask moved
to where the scan now lies, so that detectors and privacy tools can be scored exactly:

- ``cart`` (a 4:3 cart console): a header band with the patient's name and ID, date,
  time and preset on a filled grey band; a filled settings panel at the left; a depth
  ruler of ticks and numbers along the scan's side; a grey-scale bar and a time-gain
  curve at the right; a bold vendor logo; calipers, a measurement line and a focus
  marker on the image; a measurement readout over the image's lower corner.
- ``laptop`` (16:9 portable): the name and ID over the image's upper corners; a Doppler
  colour bar touching the image; settings as text on black at the right; the sector's
  top running off the screen's top edge.
- ``handheld`` (a portrait phone app): a light app bar with dark text, the name on black
  below it, filled round buttons in a bottom toolbar, a depth scale at the left, a
  battery icon.

Everything but the calipers, the line, the focus marker and the readout lies outside
the scan region, as on real displays. The name and ID strings are given, so a test can
burn a known identity into the header and look for it downstream.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

LAYOUTS = ("cart", "laptop", "handheld")

_FONT = cv2.FONT_HERSHEY_SIMPLEX


@dataclass(frozen=True)
class Screen:
    """A composed screen: ``image`` (BGR uint8), ``mask`` (uint8, 255 inside the scan
    region), ``header`` (uint8, 255 on the pixels that show the patient's name and ID)."""

    image: np.ndarray
    mask: np.ndarray
    header: np.ndarray


def _text(
    img: np.ndarray,
    text: str,
    org: tuple[int, int],
    scale: float,
    colour: tuple[int, int, int],
    thick: int = 1,
) -> None:
    cv2.putText(img, text, org, _FONT, scale, colour, thick, cv2.LINE_AA)


def _text_box(text: str, org: tuple[int, int], scale: float, thick: int = 1) -> tuple[int, ...]:
    (w, h), base = cv2.getTextSize(text, _FONT, scale, thick)
    return org[0] - 2, org[1] - h - 2, w + 4, h + base + 4


def _mark(header: np.ndarray, box: tuple[int, ...]) -> None:
    x, y, w, h = box
    header[max(0, y) : y + h, max(0, x) : x + w] = 255


def _region_edge(mask: np.ndarray, row: int, side: str) -> int | None:
    cols = np.flatnonzero(mask[min(max(row, 0), mask.shape[0] - 1)])
    if not len(cols):
        return None
    return int(cols[-1] if side == "right" else cols[0])


def _annotate_image(
    img: np.ndarray, mask: np.ndarray, rng: np.random.Generator, unit: float
) -> None:
    """Calipers, a dotted measurement line and a focus marker on the scan."""
    ys, xs = np.nonzero(mask)
    if not len(ys):
        return
    a, b = rng.integers(0, len(ys), 2)
    arm = max(3, int(6 * unit))
    for y, x in ((ys[a], xs[a]), (ys[b], xs[b])):
        cv2.line(img, (int(x) - arm, int(y)), (int(x) + arm, int(y)), (255, 255, 0), 1)
        cv2.line(img, (int(x), int(y) - arm), (int(x), int(y) + arm), (255, 255, 0), 1)
    for t in np.linspace(0.1, 0.9, 12):
        px, py = int(xs[a] + t * (xs[b] - xs[a])), int(ys[a] + t * (ys[b] - ys[a]))
        cv2.circle(img, (px, py), 1, (255, 255, 0), -1)
    rows = np.flatnonzero(mask.any(1))
    row = int(rows[0] + 0.45 * (rows[-1] - rows[0]))
    edge = _region_edge(mask, row, "right")
    if edge is not None:  # focus marker just outside the region's right edge
        s = max(4, int(7 * unit))
        tri = np.array(
            [[edge + 2, row], [edge + 2 + s, row - s // 2], [edge + 2 + s, row + s // 2]]
        )
        cv2.fillPoly(img, [tri.astype(np.int32)], (0, 200, 255))


def _ruler(img: np.ndarray, mask: np.ndarray, side: str, unit: float, numbers: bool) -> None:
    """Depth ticks following the region's edge (a sector's slanted side included)."""
    rows = np.flatnonzero(mask.any(1))
    if not len(rows):
        return
    step = max(6, int(18 * unit))
    for i, row in enumerate(range(int(rows[0]) + 2, int(rows[-1]), step)):
        edge = _region_edge(mask, row, side)
        if edge is None:
            continue
        length = int((10 if i % 5 == 0 else 5) * unit) + 2
        x0 = edge + 4 if side == "right" else edge - 4
        x1 = x0 + length if side == "right" else x0 - length
        cv2.line(img, (x0, row), (x1, row), (220, 220, 220), 1)
        if numbers and i % 5 == 0:
            org = (x1 + 3, row + 4) if side == "right" else (x1 - int(22 * unit) - 3, row + 4)
            _text(img, str(i), org, 0.4 * unit, (220, 220, 220))


def _grey_bar(img: np.ndarray, x: int, y: int, w: int, h: int, colour: bool = False) -> None:
    ramp = np.linspace(255, 0, h).astype(np.uint8)
    if colour:  # a Doppler bar: red above, blue below
        bar = np.zeros((h, w, 3), np.uint8)
        bar[: h // 2, :, 2] = ramp[: h // 2, None] // 2 + 128
        bar[h // 2 :, :, 0] = 255 - ramp[h // 2 :, None]
    else:
        bar = np.repeat(ramp[:, None, None], 3, axis=2).repeat(w, axis=1)
    img[y : y + h, x : x + w] = bar


def compose_screen(
    scan: np.ndarray,
    region: np.ndarray,
    layout: str,
    rng: np.random.Generator,
    name: str = "DOE^JANE",
    patient_id: str = "MRN 0012345",
    scale: float = 1.0,
) -> Screen:
    """A full screen of ``layout`` with ``scan`` (grey uint8) on it and its ``region``
    mask moved along. ``scale`` sizes the whole screen (1: 1024 x 768, 1280 x 720 or
    720 x 1280)."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown screen layout {layout!r}; choose from {LAYOUTS}")
    if scan.ndim != 2 or region.shape != scan.shape:
        raise ValueError("compose_screen needs a grey [H, W] scan and a region of its shape")
    size = {"cart": (1024, 768), "laptop": (1280, 720), "handheld": (720, 1280)}[layout]
    W, H = round(size[0] * scale), round(size[1] * scale)
    u = scale
    img = np.zeros((H, W, 3), np.uint8)
    mask = np.zeros((H, W), np.uint8)
    header = np.zeros((H, W), np.uint8)
    stamp = (
        f"{int(rng.integers(1, 28)):02d}/{int(rng.integers(1, 12)):02d}/2026 "
        f"{int(rng.integers(7, 19)):02d}:{int(rng.integers(0, 59)):02d}"
    )
    preset = str(rng.choice(["Abd", "Lung", "OB", "Card", "MSK", "Renal"]))
    if layout == "cart":
        band = int(60 * u)
        img[:band] = (48, 46, 44)
        for text, x in ((name, 12), (patient_id, 300), (stamp, 560), (preset + " C5-2", 820)):
            org = (int(x * u), int(38 * u))
            _text(img, text, org, 0.75 * u, (235, 235, 235), 2)
            if text in (name, patient_id):
                _mark(header, _text_box(text, org, 0.75 * u, 2))
        panel = int(175 * u)
        img[band:, :panel] = (70, 58, 50)
        for i, line in enumerate(
            [
                "B-mode",
                f"Gain {int(rng.integers(30, 80))}",
                f"Depth {rng.uniform(4, 18):.1f}cm",
                f"FR {int(rng.integers(12, 40))}Hz",
                "DR 60",
                "MI 1.1",
                "TIS 0.4",
            ]
        ):
            org = (int(12 * u), band + int((40 + 34 * i) * u))
            _text(img, line, org, 0.6 * u, (230, 230, 230))
        box = (panel + int(20 * u), band + int(12 * u), int(680 * u), H - band - int(24 * u))
        _draw_scan(img, mask, scan, region, box)
        _ruler(img, mask, "right", u, numbers=True)
        _grey_bar(img, W - int(60 * u), band + int(40 * u), int(16 * u), int(260 * u))
        tgc = [
            (W - int(110 * u) + int(12 * u * np.sin(k / 3)), band + int((340 + 12 * k) * u))
            for k in range(30)
        ]
        cv2.polylines(img, [np.array(tgc, np.int32)], False, (0, 220, 0), 1)
        _text(img, "SONO", (W - int(170 * u), H - int(30 * u)), 1.4 * u, (255, 255, 255), 5)
        readout = f"D1 {rng.uniform(0.5, 6):.2f} cm"
        ys, xs = np.nonzero(mask)
        _text(img, readout, (int(xs.min()) + 4, int(ys.max()) - 8), 0.55 * u, (255, 255, 0))
    elif layout == "laptop":
        box = (int(60 * u), -int(90 * u), int(820 * u), H + int(70 * u))
        _draw_scan(img, mask, scan, region, box)
        ys, xs = np.nonzero(mask)
        left, right = int(xs.min()), int(xs.max())
        for text, org in (
            (name, (left + 4, int(28 * u))),
            (patient_id, (right - int(200 * u), int(28 * u))),
        ):
            _text(img, text, org, 0.7 * u, (255, 255, 255), 2)
            _mark(header, _text_box(text, org, 0.7 * u, 2))
        _text(img, stamp, (left + 4, int(56 * u)), 0.5 * u, (200, 200, 200))
        _grey_bar(img, right + 1, int(120 * u), int(18 * u), int(240 * u), colour=True)
        for i, line in enumerate(
            [
                "PW",
                f"PRF {rng.uniform(1, 6):.1f}k",
                "WF 100",
                preset,
                f"{int(rng.integers(20, 70))}%",
            ]
        ):
            _text(img, line, (int(1000 * u), int((140 + 40 * i) * u)), 0.7 * u, (200, 200, 200))
        _ruler(img, mask, "left", u, numbers=False)
    else:  # handheld
        bar = int(110 * u)
        img[:bar] = (215, 215, 215)
        _text(img, "Scan", (int(20 * u), int(70 * u)), 1.2 * u, (40, 40, 40), 3)
        _text(img, preset, (int(560 * u), int(70 * u)), 1.0 * u, (40, 40, 40), 2)
        cv2.rectangle(
            img, (int(640 * u), int(20 * u)), (int(690 * u), int(42 * u)), (40, 40, 40), 2
        )
        cv2.rectangle(
            img, (int(644 * u), int(24 * u)), (int(675 * u), int(38 * u)), (40, 160, 40), -1
        )
        for text, org in (
            (name, (int(20 * u), bar + int(40 * u))),
            (patient_id, (int(400 * u), bar + int(40 * u))),
        ):
            _text(img, text, org, 0.8 * u, (255, 255, 255), 2)
            _mark(header, _text_box(text, org, 0.8 * u, 2))
        tools = int(170 * u)
        box = (int(40 * u), bar + int(70 * u), W - int(80 * u), H - bar - tools - int(90 * u))
        _draw_scan(img, mask, scan, region, box)
        img[H - tools :] = (30, 30, 30)
        for k in range(4):
            centre = (int((90 + 180 * k) * u), H - tools // 2)
            cv2.circle(img, centre, int(42 * u), (95, 95, 95), -1)
            _text(
                img,
                "+-*/"[k],
                (centre[0] - int(10 * u), centre[1] + int(10 * u)),
                1.0 * u,
                (250, 250, 250),
                2,
            )
        _ruler(img, mask, "left", u, numbers=True)
        _text(img, stamp, (int(20 * u), H - tools - int(20 * u)), 0.6 * u, (180, 180, 180))
    _annotate_image(img, mask, rng, u)
    return Screen(img, mask, header)


def _draw_scan(
    img: np.ndarray,
    mask: np.ndarray,
    scan: np.ndarray,
    region: np.ndarray,
    box: tuple[int, int, int, int],
) -> None:
    """Fit ``scan`` (aspect kept) into ``box`` = (x, y, w, h), which may run off the
    screen: its grey levels into all three channels of ``img`` (its black corners too),
    its region into ``mask``."""
    x, y, w, h = box
    scale = min(w / scan.shape[1], h / scan.shape[0])
    sw, sh = max(1, round(scan.shape[1] * scale)), max(1, round(scan.shape[0] * scale))
    sx, sy = x + (w - sw) // 2, y + (h - sh) // 2
    image = cv2.resize(scan, (sw, sh), interpolation=cv2.INTER_LINEAR)
    inside = cv2.resize(region, (sw, sh), interpolation=cv2.INTER_NEAREST)
    H, W = mask.shape
    x0, y0, x1, y1 = max(0, sx), max(0, sy), min(W, sx + sw), min(H, sy + sh)
    if x1 <= x0 or y1 <= y0:
        raise ValueError("the scan's box lies off the screen")
    img[y0:y1, x0:x1] = image[y0 - sy : y1 - sy, x0 - sx : x1 - sx, None]
    mask[y0:y1, x0:x1] = inside[y0 - sy : y1 - sy, x0 - sx : x1 - sx]
