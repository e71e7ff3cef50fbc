"""``usjepa data build``: raw dataset layouts to corpus frames, scan masks and a manifest.

Each raw source (an image, a video, a volume or a DICOM file) is one unit of work. Its
frames are written grayscale with the short side resized to ``size``; its scan region is
detected (over the clip's frames by temporal variance for videos, cine and volumes, per
frame for images; on a DICOM screen, inside the image rectangles that its Sequence of
Ultrasound Regions gives, see :mod:`usjepa.data.ingest.us_regions`) and written as a
mask; its manifest rows go to a part file under ``OUT/.build/DATASET/``. A re-run skips
sources whose part file exists, so an interrupted build resumes where it stopped. A
source that cannot be read is logged in ``OUT/build_errors.csv`` and counted, never
fatal. The manifest ``OUT/manifest.parquet`` is rewritten from all part files (every
dataset built into ``OUT``) at the end.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import re
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from usjepa.data.ingest.readers import FramePolicy, SourceError, iter_frames, source_kind
from usjepa.data.ingest.us_regions import detect_in_layout, read_layout
from usjepa.data.leakage import phash
from usjepa.data.privacy import Pseudonyms, check_corpus, default_secret_path, load_secret, scrub
from usjepa.data.scan_region import detect_scan_region, detect_scan_region_clip

MANIFEST_NAME = "manifest.parquet"
ERRORS_NAME = "build_errors.csv"


@dataclass
class BuildReport:
    """What a build did: sources seen, built now, skipped as done, failed; frames written."""

    manifest: Path
    sources: int = 0
    built: int = 0
    skipped: int = 0
    failed: int = 0
    frames: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"{self.manifest}: {self.sources} sources ({self.built} built, {self.skipped} "
            f"already done, {self.failed} unreadable), {self.frames} frames in the manifest"
        )


@dataclass(frozen=True)
class _Job:
    source: str
    kind: str
    raw_root: str
    out_root: str
    dataset: str
    organ: str
    patient: str
    size: int
    image_format: str
    jpeg_quality: int
    policy: FramePolicy
    recorded: str  # the source as the corpus names it (a pseudonym unless names are kept)
    blank: bool  # set the pixels outside the scan region to black in written frames
    aspect: float  # width over height of what one stored pixel shows


def discover(raw_root: Path, exclude: str | None = None) -> list[tuple[Path, str]]:
    """Every readable source under ``raw_root`` (sorted), with its kind; relative paths
    matching the ``exclude`` regex are skipped."""
    found = []
    skip = re.compile(exclude) if exclude else None
    for path in sorted(raw_root.rglob("*")):
        if skip is not None and skip.search(path.relative_to(raw_root).as_posix()):
            continue
        if path.is_file() and not path.name.startswith("."):
            kind = source_kind(path)
            if kind is not None:
                found.append((path, kind))
    return found


def source_key(rel: str) -> str:
    """A file-system-safe, collision-free folder name for a source's relative path."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", rel.replace("/", "__"))[-80:]
    return f"{stem}-{hashlib.sha1(rel.encode()).hexdigest()[:8]}"


def patient_of(rel: str, pattern: str | None) -> str:
    """Patient id: the first group of ``pattern`` matched on the relative path, else the
    source path without its extension (each source its own patient)."""
    if pattern:
        match = re.search(pattern, rel)
        if match:
            return match.group(1) if match.groups() else match.group(0)
    return rel.rsplit(".", 1)[0]


def check_pixel_aspect(pixel_aspect: float) -> None:
    """Refuse a ``pixel_aspect`` that is no pixel's shape, naming what to give."""
    if not 0.1 <= pixel_aspect <= 10:
        raise ValueError(
            f"pixel_aspect {pixel_aspect}: give the width over the height of what one pixel "
            "shows, in [0.1, 10] (1.33 for 4:3 scans stored square)"
        )


def resize_short(frame: np.ndarray, size: int) -> np.ndarray:
    """Resize so that the shorter side is ``size`` (area filter when shrinking)."""
    h, w = frame.shape
    scale = size / min(h, w)
    if scale == 1.0:
        return frame
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(frame, new, interpolation=interp)


def _write(path: Path, image: np.ndarray, params: list[int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image, params):
        raise OSError(f"cannot write {path}: check free disk space and permissions")


#: frames a short clip is detected on when its sampling keeps fewer than three of them
DETECTION_POLICY = FramePolicy(video_fps=1000.0, max_frames_per_clip=16)


def _detection_stack(path: Path, job: _Job, frames: list[np.ndarray]) -> list[np.ndarray]:
    """The frames a clip's scan region is detected on: its corpus frames, or for a cine
    short enough that sampling keeps one or two (a 1 s clip at 2 frames/s), up to 16 of
    all its frames (what moves over them is tissue; the interface stays put)."""
    if len(frames) >= 3 or job.kind not in ("video", "dicom"):
        return frames
    try:
        more = [resize_short(f, job.size) for _, f in iter_frames(path, job.kind, DETECTION_POLICY)]
    except (SourceError, OSError, ValueError, cv2.error):
        return frames
    return more if len(more) > len(frames) else frames


def _build_source(job: _Job) -> tuple[str, pd.DataFrame | None, str]:
    """Read, resize, mask and write one source; returns (source, rows or None, error)."""
    cv2.setNumThreads(1)
    out = Path(job.out_root)
    key = source_key(job.recorded)
    ext = ".png" if job.image_format == "png" else ".jpg"
    params = [] if ext == ".png" else [cv2.IMWRITE_JPEG_QUALITY, job.jpeg_quality]
    path = Path(job.raw_root) / job.source
    try:
        frames = [
            (i, resize_short(f, job.size)) for i, f in iter_frames(path, job.kind, job.policy)
        ]
    except (SourceError, OSError, ValueError, cv2.error) as err:
        return job.source, None, str(err)
    if not frames:
        return job.source, None, f"{job.source}: no frames"
    frame_dir = Path("frames") / job.dataset / key
    mask_dir = Path("masks") / job.dataset / key
    # a DICOM screen that says where its images are is searched there only
    layout = read_layout(path)[0] if job.kind == "dicom" else None

    def detect(image: np.ndarray, clip: bool) -> np.ndarray:
        detector = partial(
            detect_scan_region_clip if clip else detect_scan_region, aspect=job.aspect
        )
        return detector(image) if layout is None else detect_in_layout(image, layout, detector)

    stack = _detection_stack(path, job, [f for _, f in frames])
    clip_mask = None
    if len(stack) >= 3 and len({f.shape for f in stack}) == 1:
        clip_mask = detect(np.stack(stack), clip=True)
        if (clip_mask > 0).mean() < 0.02:  # a static clip has no temporal variance to use
            clip_mask = None
        else:
            _write(out / mask_dir / "clip.png", clip_mask, [])
    rows = []
    for index, frame in frames:
        rel = frame_dir / f"{index:06d}{ext}"
        if clip_mask is None:
            mask = detect(frame, clip=False)
            mask_rel = mask_dir / f"{index:06d}.png"
            _write(out / mask_rel, mask, [])
        else:
            mask, mask_rel = clip_mask, mask_dir / "clip.png"
        # the header's name and ID lie outside the region: black them out when asked
        _write(out / rel, cv2.bitwise_and(frame, mask) if job.blank else frame, params)
        # (the hash is of the frame as scanned, so leakage checks match benchmark images)
        rows.append(
            (
                rel.as_posix(),
                index,
                frame.shape[1],
                frame.shape[0],
                mask_rel.as_posix(),
                phash(frame),
            )
        )
    table = pd.DataFrame(
        rows, columns=["frame_path", "frame_index", "width", "height", "scan_mask", "phash"]
    )
    table.insert(1, "dataset", job.dataset)
    table.insert(2, "organ", job.organ)
    table.insert(3, "source_kind", job.kind)
    table.insert(4, "source_path", job.recorded)
    table.insert(6, "patient_id", f"{job.dataset}/{job.patient}")
    table.insert(7, "split", "train")
    return job.source, table, ""


def _save_part(table: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    table.to_parquet(tmp, index=False)
    os.replace(tmp, path)  # atomic: an interrupted write leaves no half part


def merge_parts(out_root: Path) -> pd.DataFrame:
    """Concatenate every dataset's part files into ``OUT/manifest.parquet``."""
    parts = sorted((out_root / ".build").glob("*/*.parquet"))
    table = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True) if parts else None
    if table is None:
        table = pd.DataFrame(columns=["frame_path"])
    tmp = out_root / (MANIFEST_NAME + ".tmp")
    table.to_parquet(tmp, index=False)
    os.replace(tmp, out_root / MANIFEST_NAME)
    return table


def build_dataset(
    raw_root: str | Path,
    out_root: str | Path,
    dataset: str,
    organ: str = "unknown",
    size: int = 256,
    image_format: str = "jpg",
    jpeg_quality: int = 95,
    policy: FramePolicy | None = None,
    patient_pattern: str | None = None,
    exclude: str | None = None,
    workers: int = 1,
    progress: bool = True,
    pseudonymize: bool = True,
    secret: str | Path | None = None,
    blank_outside: bool = True,
    pixel_aspect: float = 1.0,
) -> BuildReport:
    """Build one dataset's raw folder into corpus frames under ``out_root``.

    Args:
        raw_root: the dataset's raw download.
        out_root: corpus folder (shared by all datasets; the manifest lists them all).
        dataset: catalogue name, recorded on every row.
        organ: anatomy, recorded on every row.
        size: short side of written frames in pixels.
        image_format: ``jpg`` or ``png``.
        jpeg_quality: JPEG quality of written frames.
        policy: frame sampling for videos, cine and volumes.
        patient_pattern: regex on each source's path relative to ``raw_root`` whose first
            group is the patient id (e.g. ``^([^/]+)/`` for one folder per patient).
        exclude: regex; sources whose relative path matches are skipped (for example
            segmentation masks stored beside the images).
        workers: processes; 1 builds in this process.
        progress: show a progress bar.
        pseudonymize: record patients and sources as keyed pseudonyms
            (:mod:`usjepa.data.privacy`), in the manifest, the corpus's folder and file
            names and the error log; off keeps the raw names (public data you may want to
            trace back).
        secret: the pseudonym key's file; default ``RAW/../.usjepa-secret``, made when
            absent. Keep it (not in the corpus): the same patient gets the same pseudonym
            only under the same key.
        blank_outside: write frames with every pixel outside the scan region black (a
            screen's header with the patient's name, its panels and logos).
        pixel_aspect: width over height of what one pixel of the raw files shows: 1 for
            images as the scanner displayed them; for a set stored stretched (4:3 scans
            resized to squares: 1.33) the scan region is detected at square pixels, where
            a sector's floor is a circle (:func:`~usjepa.data.scan_region.detect_scan_region`).
            Frames are written as stored.
    """
    raw, out = Path(raw_root), Path(out_root)
    if not raw.is_dir():
        raise FileNotFoundError(f"raw folder {raw} not found; point RAW at the download")
    if image_format not in ("jpg", "png"):
        raise ValueError(f"image_format must be 'jpg' or 'png', got {image_format!r}")
    check_pixel_aspect(pixel_aspect)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", dataset):
        raise ValueError(f"dataset name {dataset!r}: use letters, digits, '_', '-', '.'")
    policy = policy or FramePolicy()
    names: Pseudonyms | None = None
    if pseudonymize:
        names = Pseudonyms(load_secret(secret or default_secret_path(raw), out))
    check_corpus(out, names)
    parts_dir = out / ".build" / dataset
    sources = discover(raw, exclude)
    report = BuildReport(out / MANIFEST_NAME, sources=len(sources))
    jobs, recorded = [], {}
    for path, kind in sources:
        rel = path.relative_to(raw).as_posix()
        recorded[rel] = rel if names is None else names.source(dataset, rel)
        if (parts_dir / f"{source_key(recorded[rel])}.parquet").exists():
            report.skipped += 1
            continue
        patient = patient_of(rel, patient_pattern)
        jobs.append(
            _Job(
                rel,
                kind,
                str(raw),
                str(out),
                dataset,
                organ,
                patient if names is None else names.patient(dataset, patient),
                size,
                image_format,
                jpeg_quality,
                policy,
                recorded[rel],
                blank_outside,
                pixel_aspect,
            )
        )
    bar = tqdm(total=len(jobs), desc=f"building {dataset}", disable=not progress, unit="src")

    def done(source: str, table: pd.DataFrame | None, error: str) -> None:
        bar.update()
        name = recorded[source]
        if table is None:
            report.failed += 1
            # readers name the file in their messages: the log gets the pseudonym
            hide = {str(raw / source): name, str(raw.resolve() / source): name, source: name}
            report.errors.append((name, error if names is None else scrub(error, hide)))
        else:
            _save_part(table, parts_dir / f"{source_key(name)}.parquet")
            report.built += 1

    if workers <= 1:
        for job in jobs:
            done(*_build_source(job))
    else:
        # spawn, not fork: a forked child inherits locks held by the parent's reader and
        # OpenMP threads (SimpleITK, OpenCV, torch) and can deadlock on them
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for future in as_completed([pool.submit(_build_source, j) for j in jobs]):
                done(*future.result())
    bar.close()
    _log_errors(out, dataset, report.errors)
    report.frames = len(merge_parts(out))
    return report


def _log_errors(out: Path, dataset: str, errors: list[tuple[str, str]]) -> None:
    """Rewrite this dataset's lines of ``build_errors.csv`` (other datasets' stay)."""
    path = out / ERRORS_NAME
    old = (
        pd.read_csv(path) if path.exists() else pd.DataFrame(columns=["dataset", "source", "error"])
    )
    new = pd.DataFrame([(dataset, s, e) for s, e in errors], columns=["dataset", "source", "error"])
    table = pd.concat([old[old["dataset"] != dataset], new], ignore_index=True)
    if len(table):
        table.to_csv(path, index=False)
    elif path.exists():
        path.unlink()
