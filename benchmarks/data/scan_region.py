"""Scan-region detection: IoU per image type on real and synthetic frames, and speed.

Real frames: ``tests/fixtures/real_scans`` (lung videos under CC BY licences, 2 frames
per clip, 256 px), each scored against the mask we drew for its clip, grouped by image
type: convex fans (many with rib shadows reaching the fan's sides and floor), convex
frames cropped inside the fan, and linear frames cropped to the array's image; and
``tests/fixtures/fetal_hc18`` (30 obstetric frames of HC18, CC BY 4.0, short side 256 px):
convex abdominal fans zoomed so that the frame cuts them, some steered, with black
anonymisation boxes, each against the region we drew from its full-size frame. Synthetic
frames: for each probe geometry (convex, linear, phased), ``--frames`` frames at 256 px
with all overlays (text, ruler, grey bar, ECG, calipers) and every lesion class, scored
against the analytic mask. Speed is frames per second on one core (OpenCV and torch
limited to one thread), measured in the same run as a plain threshold + convex hull
baseline, so the ratio is robust to machine load.

Real phased-array cardiac frames (optional, ``--phased DIR``): the 2-D views of the
TTE47 reference gallery (echocardiograms from Imperial College Healthcare NHS Trust,
published with the dataset card at github.com/thrive-centre/thrive-centre.github.io,
``assets/images/datasets/TTE47``). They are not committed (the gallery states no licence
of its own), so they are read from a checkout of that repository; their ground truth is
ours, one sector per frame in ``benchmarks/data/tte47_sectors.csv`` (see
``benchmarks/data/README.md``), and four of them also against sectors placed by hand
(``tte47_sectors_hand.csv``). Frames are converted to grayscale and resized twice: short
side 256 px with the aspect ratio kept, as ``usjepa data build`` resizes, and stretched to
256 x 256 like the committed lung fixtures, the latter scored with and without
``aspect=`` (the stretch).

A cropped breast set (optional, ``--busi DIR``): BUSI (Al-Dhabyani et al. 2020, 780
frames; not committed, e.g. ``data/<class>/images`` of
github.com/yirutsai/Breast-ultrasound-dataset), where the issue first saw the detector
leave cysts and shadows out. Its frames are cropped to the scan image, so the figure is
the share of each frame the region keeps; there is no drawn ground truth (a few frames
are cropped inside a fan and rightly keep less).

Real scanner screens: ``tests/fixtures/real_screens``, three exports from three vendors
with their interface on screen, scored frame by frame and as ``usjepa data build``
detects them; optionally (``--carotids DIR``) nine Mindray DC-8 screens and
(``--galleries DIR``) four echocardiography screens from dataset galleries, not
committed (see ``benchmarks/data/real_screens.py``).

Composited scanner screens: every real frame above, composited into one of three vendor
layouts (``usjepa.data.synthetic.screens``: a cart console with a filled header band
holding the patient's name and a filled settings panel; a laptop with the name over the
image and a Doppler bar touching it; a phone app with a light app bar and filled
buttons), all with rulers, bars, logos and calipers, resized as ``usjepa data build``
resizes (short side 256), scored against the frame's drawn region moved with it. The
same frames are also scored with ``flat=False`` (the detector before flat-fill
suppression), and saved as JPEG at quality 75 and read back first (exports are often
JPEG: a drawn fill is then no longer exactly flat). These are composites of real scans,
not captures of real screens.

Clips (optional, ``--clips DIR``): the lung videos the ``real_scans`` frames come from
(a checkout of github.com/jannisborn/covid19_pocus_ultrasound, ``data/pocus_videos``;
not committed), 16 frames per clip spread over it, resized to 256 x 256 like the
fixtures, against the clip's drawn mask: plain, and composited into each layout with an
interface that stays put. Scored with the clip detector and with the previous one
(temporal standard deviation above 2 as the signal), and with the single-frame detector
on the clip's first frame. Their cost: CPU milliseconds per clip through the clip detector
(``usjepa data build`` detects a video once, on the clip), against the single-frame
detector on every frame of them, in interleaved rounds.

``--tag`` names the run (``before`` / ``after`` a change); ``scan_region.md`` shows every
tag whose CSV is in the results folder, side by side. Writes
``benchmarks/results/data/scan_region/scan_region_<tag>.csv`` and ``scan_region.md``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch

from benchmarks.common import record_env, results_dir
from benchmarks.data.real_screens import carotid_rows, gallery_rows, grabber_rows, screen_rows
from benchmarks.data.scan_region_report import (
    BUSI,
    JPEG_ROW,
    NO_FLAT,
    PHASED,
    PHASED_HAND,
    SCREEN,
    STRETCHED,
    write_summary,
)
from usjepa.data.ingest.builder import resize_short
from usjepa.data.scan_region import (
    _region,
    detect_scan_region,
    detect_scan_region_clip,
    iou,
    sector_mask,
)
from usjepa.data.synthetic import draw_patient, render_frame
from usjepa.data.synthetic.geometry import GEOMETRY_KINDS
from usjepa.data.synthetic.screens import LAYOUTS, compose_screen

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT / "tests/fixtures/real_scans"
FETAL = ROOT / "tests/fixtures/fetal_hc18"  # convex abdominal: fetal heads (HC18)
SECTORS = ROOT / "benchmarks/data/tte47_sectors.csv"
HAND = ROOT / "benchmarks/data/tte47_sectors_hand.csv"  # four of them placed by hand
JPEG = 75  # the quality a composited screen is also scored at, saved as a JPEG export
#: interleaved timing rounds (their median is recorded): 15, as a shared machine's
#: neighbours slow some rounds by a fifth; 5 in runs before `leaner`
ROUNDS = 15


def baseline(frame: np.ndarray) -> np.ndarray:
    """Plain threshold + convex hull of all bright pixels (the reference in the issue)."""
    mask = np.zeros_like(frame)
    points = cv2.findNonZero((frame > 8).astype(np.uint8))
    if points is not None:
        cv2.fillConvexPoly(mask, cv2.convexHull(points), 255)
    return mask


def frames_per_second(fns: list, frames: list[np.ndarray], rounds: int = ROUNDS) -> list[float]:
    """Frames per CPU second of one thread (per-core throughput) for each of ``fns``,
    measured in interleaved rounds; the median round each."""
    rates: list[list[float]] = [[] for _ in fns]
    for _ in range(rounds):
        for rate, fn in zip(rates, fns):
            start = time.process_time()
            for f in frames:
                fn(f)
            rate.append(len(frames) / (time.process_time() - start))
    return [float(np.median(r)) for r in rates]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=200, help="synthetic frames per geometry")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--tag", default="latest", help="run name (before / after a change)")
    parser.add_argument("--out", default=str(results_dir(__file__)))
    parser.add_argument(
        "--phased",
        default=None,
        help="folder holding the TTE47 gallery's PNGs (assets/images/datasets/TTE47 of a "
        "thrive-centre.github.io checkout): adds the real phased-array cardiac rows",
    )
    parser.add_argument(
        "--clips",
        default=None,
        help="folder holding the lung videos of tests/fixtures/real_scans (any depth, "
        "matched by file stem): adds the clip rows",
    )
    parser.add_argument(
        "--carotids",
        default=None,
        help="a git clone of github.com/kostelansky17/carotids: adds nine real Mindray "
        "DC-8 screens (benchmarks/data/carotid_screens.csv)",
    )
    parser.add_argument(
        "--galleries",
        default=None,
        help="a git clone of github.com/thrive-centre/thrive-centre.github.io: adds four "
        "real echocardiography screens (benchmarks/data/gallery_screens.csv)",
    )
    parser.add_argument(
        "--grabber",
        default=None,
        help="a git clone of github.com/vital-ultrasound/ai-echocardiography-for-low-resource-"
        "countries: adds fourteen real Philips EPIQ 7 screens captured through a frame "
        "grabber (benchmarks/data/grabber_screens.csv)",
    )
    parser.add_argument(
        "--busi",
        default=None,
        help="folder holding BUSI's images (any depth; masks beside them are skipped): adds "
        "the share of each cropped breast frame that the detected region keeps",
    )
    ns = parser.parse_args()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    rows, frames = [], []
    for folder in (REAL, FETAL):
        for _, r in pd.read_csv(folder / "index.csv").iterrows():
            image = cv2.imread(str(folder / r.frame), cv2.IMREAD_GRAYSCALE)
            truth = cv2.imread(str(folder / r["mask"]), cv2.IMREAD_GRAYSCALE)
            rows.append(_score(f"real {r.geometry}", r.frame, image, truth))
            frames.append(image)
    for i, (geometry, image, truth) in enumerate(_fixture_frames()):
        layout = LAYOUTS[i % len(LAYOUTS)]
        grey, mask = _on_screen([image], truth, layout, i)
        rows.append(_score(f"{SCREEN} {layout}", f"{geometry}/{i}", grey[0], mask))
        rows.append(_score(f"{SCREEN} {layout}, {NO_FLAT}", str(i), grey[0], mask, flat=False))
        grey, mask = _on_screen([image], truth, layout, i, jpeg=JPEG)  # an export as JPEG
        rows.append(_score(f"{SCREEN} {layout}, {JPEG_ROW}", f"{geometry}/{i}", grey[0], mask))
    rows += screen_rows(baseline, ns.size)
    if ns.carotids is not None:
        rows += carotid_rows(Path(ns.carotids), baseline, ns.size)
    if ns.galleries is not None:
        rows += gallery_rows(Path(ns.galleries), baseline, ns.size)
    if ns.grabber is not None:
        rows += grabber_rows(Path(ns.grabber), baseline, ns.size)
    stacks: list[np.ndarray] = []
    if ns.clips is not None:
        clip_table, stacks = clip_rows(Path(ns.clips))
        rows += clip_table
    if ns.phased is not None:
        folder = Path(ns.phased)
        for image, truth, name, _ in phased_frames(folder, ns.size):
            rows.append(_score(f"{PHASED}, aspect kept", name, image, truth))
            frames.append(image)
        for image, truth, name, _ in phased_frames(folder, ns.size, HAND):
            rows.append(_score(f"{PHASED_HAND}, aspect kept", name, image, truth))
        for image, truth, name, aspect in phased_frames(folder, ns.size, stretch=True):
            rows.append(_score(f"{PHASED}, {STRETCHED}", name, image, truth))
            given = f"{PHASED}, {STRETCHED}, aspect given"
            rows.append(_score(given, name, image, truth, aspect))
        for image, truth, name, _ in phased_frames(folder, ns.size, HAND, stretch=True):
            rows.append(_score(f"{PHASED_HAND}, {STRETCHED}", name, image, truth))
    if ns.busi is not None:
        for image, name in cropped_frames(Path(ns.busi), ns.size):
            kept = float((detect_scan_region(image) > 0).mean())
            rows.append({"type": BUSI, "frame": name, "kept": kept})
    for kind in GEOMETRY_KINDS:
        for i in range(ns.frames):
            rng = np.random.default_rng([2026, i, len(kind)])
            image, truth = render_frame(draw_patient(ns.size, rng, kind), i % 6, rng)
            rows.append(_score(f"synthetic {kind}", str(i), image, truth))
            frames.append(image)
    table = pd.DataFrame(rows)
    sample = frames[:: max(1, len(frames) // 300)]
    fps, fps_base, fps_no_flat = frames_per_second(
        [detect_scan_region, baseline, lambda f: detect_scan_region(f, flat=False)], sample
    )
    table["fps"], table["fps_baseline"], table["fps_no_flat"] = fps, fps_base, fps_no_flat
    table["timing_rounds"] = ROUNDS
    if stacks:
        table["clip_frames"] = len(stacks[0])
        table["clip_ms"], table["clip_fps"], table["clip_single_fps"] = clip_speed(stacks)
    out = Path(ns.out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / f"scan_region_{ns.tag}.csv", index=False)
    record_env(out / f"scan_region_{ns.tag}.csv")
    write_summary(out)


def phased_frames(
    folder: Path, size: int, table: Path = SECTORS, stretch: bool = False
) -> list[tuple[np.ndarray, np.ndarray, str, float]]:
    """``(frame, ground truth, file, aspect)`` of every frame in ``table``: resized as
    ``usjepa data build`` does (short side ``size``, aspect ratio kept), or with
    ``stretch`` to ``size`` x ``size`` (their 4:3 frames squashed, as the committed
    fixtures are; ``aspect`` is then the stretch, width over height of what one pixel
    shows). The frame by area interpolation, its sector drawn at the frame's own size and
    resized by nearest neighbour."""
    out = []
    for _, r in pd.read_csv(table).iterrows():
        path = folder / r.file
        colour = cv2.imread(str(path))
        if colour is None:
            raise SystemExit(f"scan_region: cannot read {path}; --phased needs the TTE47 PNGs")
        if colour.shape[:2] != (r.height, r.width):
            raise SystemExit(
                f"scan_region: {path} is {colour.shape[:2]}, but its sector was drawn on "
                f"{(r.height, r.width)}; use the gallery at the commit in benchmarks/data"
            )
        gray = cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY)
        truth = sector_mask(
            gray.shape,
            (r.apex_x, r.apex_y),
            (r.angle_left, r.angle_right),
            (r.radius_inner, r.radius_outer),
        )
        if stretch:
            image = cv2.resize(gray, (size, size), interpolation=cv2.INTER_AREA)
        else:
            image = resize_short(gray, size)
        shape = (image.shape[1], image.shape[0])
        aspect = (gray.shape[1] / shape[0]) / (gray.shape[0] / shape[1])
        out.append(
            (
                image,
                cv2.resize(truth, shape, interpolation=cv2.INTER_NEAREST),
                str(r.file),
                aspect,
            )
        )
    return out


def cropped_frames(folder: Path, size: int) -> list[tuple[np.ndarray, str]]:
    """Every image under ``folder`` (lesion masks skipped), grayscale, ``size`` square."""
    paths = sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in {".png", ".jpg", ".jpeg"} and "mask" not in p.name.lower()
    )
    if not paths:
        raise SystemExit(f"scan_region: no images under {folder}; --busi needs BUSI's images")
    out = []
    for path in paths:
        gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if gray is None:
            raise SystemExit(f"scan_region: cannot read {path}")
        out.append((cv2.resize(gray, (size, size), interpolation=cv2.INTER_AREA), path.name))
    return out


def _score(
    kind: str,
    frame: str,
    image: np.ndarray,
    truth: np.ndarray,
    aspect: float = 1.0,
    flat: bool = True,
) -> dict:
    return {
        "type": kind,
        "frame": frame,
        "iou": iou(detect_scan_region(image, aspect=aspect, flat=flat), truth),
        "iou_baseline": iou(baseline(image), truth),
    }


def _fixture_frames() -> list[tuple[str, np.ndarray, np.ndarray]]:
    items = []
    for folder in (REAL, FETAL):
        for _, r in pd.read_csv(folder / "index.csv").iterrows():
            image = cv2.imread(str(folder / r.frame), cv2.IMREAD_GRAYSCALE)
            truth = cv2.imread(str(folder / r["mask"]), cv2.IMREAD_GRAYSCALE)
            items.append((r.geometry, image, truth))
    return items


def _on_screen(
    frames: list[np.ndarray], truth: np.ndarray, layout: str, seed: int, jpeg: int = 0
) -> tuple[list[np.ndarray], np.ndarray]:
    """Frames on one screen (the interface alike in each), resized as builds resize;
    with ``jpeg``, each screen saved as a JPEG of that quality and read back first."""
    screens = [compose_screen(f, truth, layout, np.random.default_rng(seed)) for f in frames]
    images = [s.image for s in screens]
    if jpeg:
        codes = [cv2.imencode(".jpg", i, [cv2.IMWRITE_JPEG_QUALITY, jpeg])[1] for i in images]
        images = [cv2.imdecode(c, cv2.IMREAD_COLOR) for c in codes]
    grey = [resize_short(cv2.cvtColor(i, cv2.COLOR_BGR2GRAY), 256) for i in images]
    mask = np.where(resize_short(screens[0].mask, 256) > 127, 255, 0).astype(np.uint8)
    return grey, mask


def _previous_clip_detector(frames: np.ndarray) -> np.ndarray:
    """The clip detector before the peak projection: temporal std above 2 as the signal."""
    std = cv2.blur(frames.astype(np.float32).std(0), (5, 5))
    return _region(np.where(std > 2.0, 255, 0).astype(np.uint8), None, 2, True)


def clip_speed(stacks: list[np.ndarray]) -> tuple[float, float, float]:
    """The clip path's cost, one core: CPU milliseconds per clip, and frames of those clips
    per CPU second through the clip detector and through the single-frame detector (as
    ``usjepa data build`` runs one or the other on a video); interleaved rounds, median."""
    per_clip, per_frames = frames_per_second(  # clips per second, either way
        [detect_scan_region_clip, lambda s: [detect_scan_region(f) for f in s]], stacks
    )
    size = float(np.mean([len(s) for s in stacks]))
    return 1000 / per_clip, per_clip * size, per_frames * size


def clip_rows(folder: Path, per_clip: int = 16) -> tuple[list[dict], list[np.ndarray]]:
    """Rows for the fixture clips whose videos lie under ``folder``, and the clips scored
    (``[T, H, W]``, plain and on each screen)."""
    videos = {
        p.stem: p for p in folder.rglob("*") if p.suffix.lower() in (".mp4", ".avi", ".mov", ".gif")
    }
    index = pd.read_csv(REAL / "index.csv")
    rows, stacks = [], []
    for clip, group in index.groupby("clip", sort=True):
        if clip not in videos:
            continue
        truth = cv2.imread(str(REAL / group["mask"].iloc[0]), cv2.IMREAD_GRAYSCALE)
        cap = cv2.VideoCapture(str(videos[clip]))
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        frames = []
        for t in np.linspace(0, max(0, count - 1), per_clip).astype(int):
            cap.set(cv2.CAP_PROP_POS_FRAMES, int(t))
            ok, frame = cap.read()
            if ok:
                grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
                frames.append(cv2.resize(grey, truth.shape[::-1], interpolation=cv2.INTER_AREA))
        cap.release()
        if len(frames) < 3:
            continue
        for layout in ("plain", *LAYOUTS):
            if layout == "plain":
                clip_frames, mask = frames, truth
            else:
                clip_frames, mask = _on_screen(frames, truth, layout, 7)
            stack = np.stack(clip_frames)
            stacks.append(stack)
            kind = "real clip, 16 frames" + ("" if layout == "plain" else f", {SCREEN} {layout}")
            rows.append(
                {
                    "type": kind,
                    "frame": clip,
                    "iou": iou(detect_scan_region_clip(stack), mask),
                    "iou_previous_clip": iou(_previous_clip_detector(stack), mask),
                    "iou_first_frame": iou(detect_scan_region(stack[0]), mask),
                    "iou_baseline": iou(baseline(stack[0]), mask),
                }
            )
    return rows, stacks


if __name__ == "__main__":
    main()
