"""Frame readers for raw sources: image files, videos, volumes and DICOM.

Every reader yields ``(frame_index, frame)`` pairs with ``frame`` a ``[H, W]`` uint8
grayscale array, and raises :class:`SourceError` naming the file when it cannot read it.
Sampling follows a :class:`FramePolicy`: clips at a rate in frames per second with a cap
per clip, volumes along an axis with a stride.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from usjepa.errors import UsjepaError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".mpg", ".mpeg", ".gif")  # POCUS sets publish GIFs
VOLUME_EXTS = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")
DICOM_EXTS = (".dcm", ".dicom")
SOURCE_KINDS = ("image", "video", "volume", "dicom")


class SourceError(UsjepaError, RuntimeError):
    """A raw source that cannot be read (corrupt, truncated, or of an unsupported kind)."""


@dataclass(frozen=True)
class FramePolicy:
    """Which frames of a multi-frame source become corpus frames.

    Args:
        video_fps: sampling rate for videos and DICOM cine, in frames per second of the
            clip's own time (a clip whose rate is unknown counts as 30 fps).
        max_frames_per_clip: cap per video, cine or volume, spread evenly over the source.
        volume_axis: array axis to slice along (0 is the slowest axis, usually z).
        volume_stride: keep every ``volume_stride``-th slice.
    """

    video_fps: float = 2.0
    max_frames_per_clip: int = 64
    volume_axis: int = 0
    volume_stride: int = 4

    def __post_init__(self) -> None:
        if self.video_fps <= 0 or self.max_frames_per_clip < 1 or self.volume_stride < 1:
            raise ValueError(
                f"frame policy {self}: video_fps must be > 0, max_frames_per_clip and "
                "volume_stride >= 1"
            )
        if self.volume_axis not in (0, 1, 2):
            raise ValueError(f"volume_axis must be 0, 1 or 2, got {self.volume_axis}")


def source_kind(path: Path) -> str | None:
    """The kind of a raw file from its name (and DICOM's magic bytes), or ``None``."""
    name = path.name.lower()
    if name.endswith(VOLUME_EXTS):
        return "volume"
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTS:
        return "image"
    if suffix in VIDEO_EXTS:
        return "video"
    if suffix in DICOM_EXTS:
        return "dicom"
    if suffix == "" and path.is_file():
        with open(path, "rb") as f:
            head = f.read(132)
        if head[128:132] == b"DICM":
            return "dicom"
    return None


def to_uint8(array: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Window a frame (or stack) to uint8 between intensity percentiles; uint8 passes."""
    if array.dtype == np.uint8:
        return array
    values = array.astype(np.float32)
    lo, hi = np.percentile(values, [low, high])
    if hi <= lo:
        hi = lo + 1.0
    result: np.ndarray = np.clip((values - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)
    return result


def gray(frame: np.ndarray, rgb: bool = True) -> np.ndarray:
    """``[H, W]`` from ``[H, W]``, ``[H, W, 1]``, ``[H, W, 3]`` or ``[H, W, 4]``."""
    if frame.ndim == 2:
        return frame
    if frame.ndim == 3 and frame.shape[2] == 1:
        return frame[..., 0]
    if frame.ndim == 3 and frame.shape[2] in (3, 4):
        code = cv2.COLOR_RGB2GRAY if rgb else cv2.COLOR_BGR2GRAY
        return cv2.cvtColor(np.ascontiguousarray(frame[..., :3]), code)
    raise SourceError(f"unsupported frame shape {frame.shape}")


def spread(indices: list[int], cap: int) -> list[int]:
    """At most ``cap`` of ``indices``, evenly spread and keeping the first."""
    if len(indices) <= cap:
        return indices
    picks = np.linspace(0, len(indices) - 1, cap).round().astype(int)
    return [indices[i] for i in picks]


def read_image(path: Path) -> Iterator[tuple[int, np.ndarray]]:
    """``(0, frame)`` for a still image."""
    frame = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if frame is None:
        raise SourceError(f"cannot decode image {path} (corrupt or not an image)")
    yield 0, to_uint8(gray(frame, rgb=False))


def read_video(path: Path, policy: FramePolicy) -> Iterator[tuple[int, np.ndarray]]:
    """``(index, frame)`` for the frames of a clip that ``policy`` keeps."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise SourceError(f"cannot open video {path} (corrupt or unsupported codec)")
    try:
        fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
        step = max(1, round(fps / policy.video_fps))
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if count > 0:
            wanted = set(spread(list(range(0, count, step)), policy.max_frames_per_clip))
        else:  # unknown length: every step-th frame up to the cap
            wanted = set(range(0, step * policy.max_frames_per_clip, step))
        last, index, got = max(wanted), 0, 0
        while index <= last and cap.grab():
            if index in wanted:
                ok, frame = cap.retrieve()
                if not ok:
                    raise SourceError(f"cannot decode frame {index} of video {path}")
                got += 1
                yield index, gray(frame, rgb=False)
            index += 1
        if got == 0:
            raise SourceError(f"video {path} has no decodable frames")
    finally:
        cap.release()


def _square_pixels(frame: np.ndarray, spacing: tuple[float, float]) -> np.ndarray:
    """Resample a slice so its pixels are square (volumes often have thick slices)."""
    sy, sx = spacing
    if sy <= 0 or sx <= 0 or abs(sy / sx - 1.0) < 0.01:
        return frame
    h, w = frame.shape
    if sy > sx:
        size = (w, max(1, round(h * sy / sx)))
    else:
        size = (max(1, round(w * sx / sy)), h)
    return cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR)


def read_volume(path: Path, policy: FramePolicy) -> Iterator[tuple[int, np.ndarray]]:
    """``(index, slice)`` for the slices of a volume that ``policy`` keeps."""
    import SimpleITK as sitk

    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as err:
        raise SourceError(f"cannot read volume {path}: {str(err).strip()[:200]}") from None
    array = sitk.GetArrayFromImage(image)  # [z, y, x] (+ components)
    spacing = tuple(reversed(image.GetSpacing()))  # to array order
    if image.GetNumberOfComponentsPerPixel() > 1:
        array = array.mean(-1).astype(array.dtype)
    if array.ndim == 2:
        array, spacing = array[None], (1.0, *spacing)
    if array.ndim != 3:
        raise SourceError(f"volume {path} has {array.ndim} dimensions; expected 2 or 3")
    array = to_uint8(array)
    axis = policy.volume_axis
    keep = spread(
        list(range(0, array.shape[axis], policy.volume_stride)), policy.max_frames_per_clip
    )
    in_plane = tuple(s for i, s in enumerate(spacing) if i != axis)
    for index in keep:
        frame = np.take(array, index, axis=axis)
        yield index, _square_pixels(np.ascontiguousarray(frame), in_plane)


def read_dicom(path: Path, policy: FramePolicy) -> Iterator[tuple[int, np.ndarray]]:
    """``(index, frame)`` for a DICOM image or multi-frame cine."""
    import pydicom

    try:
        ds = pydicom.dcmread(str(path))
        pixels = ds.pixel_array
    except Exception as err:  # pydicom raises many types for bad files
        raise SourceError(f"cannot read DICOM {path}: {str(err).strip()[:200]}") from None
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    if getattr(ds, "PhotometricInterpretation", "") == "PALETTE COLOR":
        pixels, samples = _palette_to_rgb(pixels, ds, path), 3
    if frames == 1:
        pixels = pixels[None]
    stack = np.stack([gray(f) for f in pixels]) if samples > 1 else pixels
    if getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1":
        stack = stack.max() - stack
    stack = to_uint8(stack)
    rate = 30.0
    if getattr(ds, "CineRate", None):
        rate = float(ds.CineRate)
    elif getattr(ds, "FrameTime", None):
        rate = 1000.0 / float(ds.FrameTime)
    step = max(1, round(rate / policy.video_fps))
    for index in spread(list(range(0, frames, step)), policy.max_frames_per_clip):
        yield index, stack[index]


def _palette_to_rgb(pixels: np.ndarray, ds: Any, path: Path) -> np.ndarray:
    """RGB uint8 from palette indices (a screen's colours; the indices are no grey
    scale: their order is the palette's, not the brightness's)."""
    from pydicom.pixels.processing import apply_color_lut

    try:
        rgb = apply_color_lut(pixels, ds)
    except Exception as err:  # a missing or malformed lookup table
        raise SourceError(f"cannot apply the colour palette of DICOM {path}: {err}") from None
    if rgb.dtype != np.uint8:  # 16-bit tables
        scale = 257.0 if rgb.max() > 255 else 1.0
        rgb = np.clip(np.rint(rgb / scale), 0, 255).astype(np.uint8)
    return rgb


def iter_frames(path: Path, kind: str, policy: FramePolicy) -> Iterator[tuple[int, np.ndarray]]:
    """Frames of one source by kind (see :data:`SOURCE_KINDS`)."""
    if kind == "image":
        return read_image(path)
    if kind == "video":
        return read_video(path, policy)
    if kind == "volume":
        return read_volume(path, policy)
    if kind == "dicom":
        return read_dicom(path, policy)
    raise SourceError(f"{path}: unknown source kind {kind!r}; use one of {SOURCE_KINDS}")
