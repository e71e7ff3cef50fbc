"""Scan regions on real scanner screens (``tests/fixtures/real_screens``): three exports
from three vendors (GE LOGIQ 700 linear dual view with power Doppler, Aloka SSD-4000
convex dual view as a palette-colour DICOM with its Sequence of Ultrasound Regions,
SonoSite Turbo phased-array cardiac cine of 30 frames), each against the region we drew.

Optionally (``--carotids DIR``), four full screens of a Mindray DC-8 (carotid B-mode,
carotid with a colour Doppler box, a cardiac duplex with its pulsed-wave spectrum)
published as sample data of github.com/kostelansky17/carotids (``data_samples``,
commit ``7187b78``). They are not committed: the repository's MIT licence covers its
code and its README names no source or licence for the images. Their regions are ours,
in ``benchmarks/data/carotid_screens.csv`` (the image's rectangle, or the sector's apex,
side directions in degrees from straight down and radii, in the screen's pixels).

Two ways, as rows of ``benchmarks/data/scan_region.py``'s table:

- ``one frame``: the single-frame detector on every frame as the product's reader gives
  it (grayscale, short side 256), without the file's regions;
- ``as built``: the masks that ``usjepa data build`` writes for the three files (the
  regions of a DICOM screen used where they fit its pixels; a cine detected as a clip),
  one row per screen.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from usjepa.data.ingest.builder import build_dataset, resize_short
from usjepa.data.ingest.readers import FramePolicy, iter_frames, source_kind
from usjepa.data.scan_region import detect_scan_region, iou, sector_mask

ROOT = Path(__file__).resolve().parents[2]
SCREENS = ROOT / "tests/fixtures/real_screens"
#: row labels (``type``) of the two ways
REAL_SCREEN = "real scanner screen (3 vendors)"
ONE_FRAME = f"{REAL_SCREEN}, one frame"
CAROTIDS = "real scanner screen, Mindray DC-8 (carotids sample data; not committed)"
CAROTID_TABLE = Path(__file__).with_name("carotid_screens.csv")
AS_BUILT = f"{REAL_SCREEN}, as `usjepa data build` detects it"
EVERY_FRAME = FramePolicy(video_fps=1000.0, max_frames_per_clip=1000)


def _truth(row: pd.Series, shape: tuple[int, ...]) -> np.ndarray:
    drawn = cv2.imread(str(SCREENS / row["mask"]), cv2.IMREAD_GRAYSCALE)
    return np.asarray(cv2.resize(drawn, shape[::-1], interpolation=cv2.INTER_NEAREST))


def screen_rows(baseline, size: int = 256) -> list[dict]:
    """Rows for every screen in the fixture's index: ``one frame`` per frame, ``as
    built`` per screen; ``baseline`` (a frame to mask function) scored alongside."""
    index = pd.read_csv(SCREENS / "index.csv")
    rows, first = [], {}
    for _, r in index.iterrows():
        path = SCREENS / r.screen
        for i, frame in iter_frames(path, source_kind(path) or "image", EVERY_FRAME):
            image = resize_short(frame, size)
            first.setdefault(r.screen, image)
            truth = _truth(r, image.shape)
            rows.append(
                {
                    "type": ONE_FRAME,
                    "frame": f"{r.vendor} {r.model}/{i}",
                    "screen": f"{r.vendor} {r.model}",
                    "iou": iou(detect_scan_region(image), truth),
                    "iou_baseline": iou(baseline(image), truth),
                }
            )
    with tempfile.TemporaryDirectory() as tmp:
        raw, out = Path(tmp) / "raw", Path(tmp) / "out"
        raw.mkdir()
        for name in index.screen:
            shutil.copy(SCREENS / name, raw / Path(name).name)
        build_dataset(
            raw, out, "screens", size=size, progress=False, pseudonymize=False, blank_outside=False
        )
        manifest = pd.read_parquet(out / "manifest.parquet")
        for _, r in index.iterrows():
            built = manifest[manifest["source_path"] == Path(r.screen).name].iloc[0]
            mask = cv2.imread(str(out / built["scan_mask"]), cv2.IMREAD_GRAYSCALE)
            truth = _truth(r, mask.shape)
            rows.append(
                {
                    "type": AS_BUILT,
                    "frame": f"{r.vendor} {r.model}",
                    "screen": f"{r.vendor} {r.model}",
                    "iou": iou(mask, truth),
                    "iou_baseline": iou(baseline(first[r.screen]), truth),
                }
            )
    return rows


def carotid_rows(folder: Path, baseline, size: int = 256) -> list[dict]:
    """One row per screen of :data:`CAROTID_TABLE` under ``folder`` (a checkout of the
    carotids repository): the single-frame detector, as a build detects a still image."""
    rows = []
    for _, r in pd.read_csv(CAROTID_TABLE).iterrows():
        path = folder / r.file
        colour = cv2.imread(str(path))
        if colour is None or colour.shape[:2] != (r.height, r.width):
            raise SystemExit(
                f"scan_region: cannot read {path} at {r.width} x {r.height}; --carotids "
                "needs a checkout of github.com/kostelansky17/carotids at commit 7187b78"
            )
        truth = np.zeros((r.height, r.width), np.uint8)
        if r.region == "rectangle":
            truth[int(r.y0) : int(r.y1) + 1, int(r.x0) : int(r.x1) + 1] = 255
        else:
            truth = sector_mask(
                truth.shape,
                (r.apex_x, r.apex_y),
                (r.angle_left, r.angle_right),
                (r.radius_inner, r.radius_outer),
            )
        image = resize_short(cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY), size)
        truth = cv2.resize(truth, image.shape[::-1], interpolation=cv2.INTER_NEAREST)
        rows.append(
            {
                "type": CAROTIDS,
                "frame": Path(r.file).name,
                "screen": f"Mindray DC-8: {r.view}",
                "iou": iou(detect_scan_region(image), truth),
                "iou_baseline": iou(baseline(image), truth),
            }
        )
    return rows
