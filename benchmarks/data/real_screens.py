"""Scan regions on real scanner screens (``tests/fixtures/real_screens``): three exports
from three vendors (GE LOGIQ 700 linear dual view with power Doppler, Aloka SSD-4000
convex dual view as a palette-colour DICOM with its Sequence of Ultrasound Regions,
SonoSite Turbo phased-array cardiac cine of 30 frames), each against the region we drew.

Optionally, screens that are not committed, their regions ours (the image's rectangle,
or a sector's apex, side directions in degrees from straight down and radii, in the
screen's pixels), each file read at the commit its table names:

- ``--carotids DIR``: nine full screens of a Mindray DC-8 (carotid B-mode, carotids with a
  colour Doppler box or a caliper, two cardiac duplexes with their pulsed-wave spectra)
  published as sample data of github.com/kostelansky17/carotids (``data_samples``, at
  commits ``7187b78``, ``b8e98be`` and ``3aa8b09``), in ``carotid_screens.csv``. The
  repository's MIT licence covers its code; its README names no source or licence for
  its sample images.
- ``--galleries DIR``: four echocardiography screens from the dataset galleries of
  github.com/thrive-centre/thrive-centre.github.io (commit ``593f361``; two parasternal
  clips as animated GIFs, a parasternal and an apical still with traced contours), in
  ``gallery_screens.csv``. The site states no licence for its galleries.
- ``--grabber DIR``: fourteen screens of a Philips EPIQ 7 captured through a USB frame
  grabber (dark grey background, header bar, depth dots along the sector's side, calipers;
  five presets, nine with the probe in air and five with tissue, two of them captured at
  16:9 from the 4:3 screen), published as figures of
  github.com/vital-ultrasound/ai-echocardiography-for-low-resource-countries (commit
  ``baedbe2``, ``docs/figures/framegrabber``; CC BY-SA 4.0), in ``grabber_screens.csv``.

Two ways, as rows of ``benchmarks/data/scan_region.py``'s table:

- ``one frame``: the single-frame detector on every frame as the product's reader gives
  it (grayscale, short side 256), without the file's regions (a gallery clip: 16 of its
  frames spread over it);
- ``as built``: the masks that ``usjepa data build`` writes (the regions of a DICOM
  screen used where they fit its pixels; a cine or GIF detected as a clip), one row per
  screen. A Mindray screen is a still image, built as one frame.
"""

from __future__ import annotations

import shutil
import subprocess
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
AS_BUILT = f"{REAL_SCREEN}, as `usjepa data build` detects it"
CAROTIDS = "real scanner screen, Mindray DC-8 (carotids sample data; not committed)"
CAROTID_TABLE = Path(__file__).with_name("carotid_screens.csv")
GALLERY = "real echo screen, dataset galleries (not committed)"
GALLERY_ONE = f"{GALLERY}, one frame"
GALLERY_BUILT = f"{GALLERY}, as `usjepa data build` detects it"
GALLERY_TABLE = Path(__file__).with_name("gallery_screens.csv")
GRABBER = "real scanner screen, Philips EPIQ 7 via a frame grabber (not committed)"
GRABBER_TABLE = Path(__file__).with_name("grabber_screens.csv")
#: the row types whose rows are single frames, and those that are one built mask a screen
SCREEN_FRAMES = (ONE_FRAME, CAROTIDS, GALLERY_ONE, GRABBER)
#: row types whose screens are still images, built as one frame (one frame = as built)
STILLS = (CAROTIDS, GRABBER)
SCREEN_BUILT = (AS_BUILT, GALLERY_BUILT)
EVERY_FRAME = FramePolicy(video_fps=1000.0, max_frames_per_clip=1000)


def inside(mask: np.ndarray, truth: np.ndarray) -> float:
    """The share of ``mask`` that lies inside ``truth`` (1 for an empty mask): how much of a
    detected region is scan data, not the screen's interface around it."""
    found = mask > 0
    return float((found & (truth > 0)).sum() / found.sum()) if found.any() else 1.0


def _fit(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return np.asarray(cv2.resize(mask, shape[::-1], interpolation=cv2.INTER_NEAREST))


#: a screen to score: its file in the build's raw folder, its label in the table, the
#: prefix of its frames' labels, and the region drawn for it at the screen's size
Screen = tuple[Path, str, str, np.ndarray]


def _frames_and_built(
    raw: Path, screens: list[Screen], types: tuple[str, str], policy: FramePolicy, baseline,
    size: int,
) -> list[dict]:  # fmt: skip
    """``types[0]`` rows for the frames of each screen that ``policy`` keeps (the
    single-frame detector), then one ``types[1]`` row per screen for the mask that
    ``usjepa data build`` writes when it builds ``raw``; ``baseline`` alongside."""
    rows, first = [], {}
    for path, screen, label, drawn in screens:
        for i, frame in iter_frames(path, source_kind(path) or "image", policy):
            if frame.shape != drawn.shape:
                raise SystemExit(
                    f"scan_region: {label} is {frame.shape[1]} x {frame.shape[0]}, its "
                    f"drawn region {drawn.shape[1]} x {drawn.shape[0]}"
                )
            image = resize_short(frame, size)
            first.setdefault(path.name, image)
            truth = _fit(drawn, image.shape)
            found = detect_scan_region(image)
            rows.append(
                {
                    "type": types[0],
                    "frame": f"{label}/{i}",
                    "screen": screen,
                    "iou": iou(found, truth),
                    "inside": inside(found, truth),
                    "iou_baseline": iou(baseline(image), truth),
                }
            )
    out = raw.parent / "built"
    build_dataset(
        raw, out, "screens", size=size, progress=False, pseudonymize=False, blank_outside=False
    )
    manifest = pd.read_parquet(out / "manifest.parquet")
    for path, screen, label, drawn in screens:
        built = manifest[manifest["source_path"] == path.name].iloc[0]
        mask = cv2.imread(str(out / built["scan_mask"]), cv2.IMREAD_GRAYSCALE)
        truth = _fit(drawn, mask.shape)
        rows.append(
            {
                "type": types[1],
                "frame": label,
                "screen": screen,
                "iou": iou(mask, truth),
                "inside": inside(mask, truth),
                "iou_baseline": iou(baseline(first[path.name]), truth),
            }
        )
    return rows


def screen_rows(baseline, size: int = 256) -> list[dict]:
    """Rows for every screen in the fixture's index: ``one frame`` per frame, ``as
    built`` per screen; ``baseline`` (a frame to mask function) scored alongside."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw"
        raw.mkdir()
        screens = []
        for _, r in pd.read_csv(SCREENS / "index.csv").iterrows():
            path = Path(shutil.copy(SCREENS / r.screen, raw / Path(r.screen).name))
            drawn = cv2.imread(str(SCREENS / r["mask"]), cv2.IMREAD_GRAYSCALE)
            label = f"{r.vendor} {r.model}"
            screens.append((path, label, label, drawn))
        return _frames_and_built(raw, screens, (ONE_FRAME, AS_BUILT), EVERY_FRAME, baseline, size)


def _export(checkout: Path, commit: str, file: str, dest: Path, flag: str) -> Path:
    """``file`` as it is at ``commit`` of the git checkout ``checkout``, written to
    ``dest`` (several screens were removed from their repository's tree later)."""
    try:
        blob = subprocess.run(
            ["git", "-C", str(checkout), "show", f"{commit}:{file}"],
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        raise SystemExit(
            f"scan_region: cannot read {file} at commit {commit} of {checkout}; {flag} "
            "needs a git clone of the repository (benchmarks/data/README.md)"
        ) from None
    dest.write_bytes(blob)
    return dest


def _region(r: pd.Series) -> np.ndarray:
    """The drawn region of a table row, at the screen's own size (a sector drawn at
    another size, ``sector_height`` x ``sector_width``, resized to it: a capture of the
    same screen at another resolution or shape)."""
    if "sector_height" in r and (r.sector_height, r.sector_width) != (r.height, r.width):
        drawn = r.copy()
        drawn["height"], drawn["width"] = r.sector_height, r.sector_width
        return _fit(_region(drawn), (int(r.height), int(r.width)))
    truth = np.zeros((int(r.height), int(r.width)), np.uint8)
    if r.get("region", "sector") == "rectangle":
        truth[int(r.y0) : int(r.y1) + 1, int(r.x0) : int(r.x1) + 1] = 255
        return truth
    return sector_mask(
        truth.shape, (r.apex_x, r.apex_y), (r.angle_left, r.angle_right),
        (r.radius_inner, r.radius_outer),
    )  # fmt: skip


def still_rows(
    folder: Path, table: Path, kind: str, flag: str, name, baseline, size: int = 256
) -> list[dict]:
    """One ``kind`` row per screen of ``table`` (still images) under ``folder``, a clone of
    their repository, each read at its row's commit: the single-frame detector, as a build
    detects a still image; ``name(row)`` labels the screen."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, r in pd.read_csv(table).iterrows():
            dest = Path(tmp) / f"{k}{Path(r.file).suffix}"
            colour = cv2.imread(str(_export(folder, r.commit, r.file, dest, flag)))
            if colour is None or colour.shape[:2] != (r.height, r.width):
                raise SystemExit(f"scan_region: {r.file} is not a {r.width} x {r.height} image")
            image = resize_short(cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY), size)
            truth = _fit(_region(r), image.shape)
            found = detect_scan_region(image)
            rows.append(
                {
                    "type": kind,
                    "frame": Path(r.file).name,
                    "screen": name(r),
                    "iou": iou(found, truth),
                    "inside": inside(found, truth),
                    "iou_baseline": iou(baseline(image), truth),
                }
            )
    return rows


def carotid_rows(folder: Path, baseline, size: int = 256) -> list[dict]:
    """The Mindray screens of :data:`CAROTID_TABLE` under ``folder`` (a clone of the
    carotids repository)."""
    return still_rows(
        folder, CAROTID_TABLE, CAROTIDS, "--carotids", lambda r: f"Mindray DC-8: {r.view}",
        baseline, size,
    )  # fmt: skip


def grabber_rows(folder: Path, baseline, size: int = 256) -> list[dict]:
    """The Philips EPIQ 7 captures of :data:`GRABBER_TABLE` under ``folder`` (a clone of
    the vital-ultrasound repository)."""
    return still_rows(
        folder, GRABBER_TABLE, GRABBER, "--grabber",
        lambda r: f"Philips EPIQ 7: {r.preset}, {r.view}", baseline, size,
    )  # fmt: skip


def gallery_rows(folder: Path, baseline, size: int = 256, per_clip: int = 16) -> list[dict]:
    """Rows for the screens of :data:`GALLERY_TABLE` under ``folder`` (a clone of the
    thrive-centre site): ``one frame`` on up to ``per_clip`` frames of each, and the mask
    that ``usjepa data build`` writes for each (a GIF detected as a clip)."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw"
        raw.mkdir()
        screens = []
        for k, r in pd.read_csv(GALLERY_TABLE).iterrows():
            dest = raw / f"{k}{Path(r.file).suffix}"
            _export(folder, r.commit, r.file, dest, "--galleries")
            screens.append((dest, f"{r.vendor}: {r.view}", Path(r.file).name[:24], _region(r)))
        spread = FramePolicy(video_fps=1000.0, max_frames_per_clip=per_clip)
        return _frames_and_built(raw, screens, (GALLERY_ONE, GALLERY_BUILT), spread, baseline, size)
