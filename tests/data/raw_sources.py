"""Writers for small raw sources the build tests read: images, mp4, GIF, NIfTI, DICOM cine."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from usjepa.data.synthetic import draw_patient, render_frame


def clip(n: int, size: int = 96, seed: int = 0, kind: str = "convex") -> list[np.ndarray]:
    """``n`` synthetic B-mode frames of one patient (one transducer pose)."""
    rng = np.random.default_rng(seed)
    patient = draw_patient(size, rng, kind)  # type: ignore[arg-type]
    return [render_frame(patient, 0, rng)[0] for _ in range(n)]


def write_images(folder: Path, n: int = 4, seed: int = 0) -> list[Path]:
    paths = []
    for i, frame in enumerate(clip(n, seed=seed)):
        path = folder / f"patient{i % 2}" / f"img{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), frame)
        paths.append(path)
    return paths


def write_mp4(path: Path, n: int = 30, fps: float = 10.0, seed: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = clip(n, seed=seed)
    h, w = frames[0].shape
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened(), "OpenCV cannot write mp4 here"
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    writer.release()
    return path


def write_gif(path: Path, n: int = 6, frame_ms: int = 100, seed: int = 4) -> Path:
    """An animated GIF, as POCUS collections publish clips (written with Pillow)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    frames = [Image.fromarray(frame) for frame in clip(n, seed=seed)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=frame_ms, loop=0)
    return path


def write_nifti(path: Path, depth: int = 12, seed: int = 2) -> Path:
    import SimpleITK as sitk

    path.parent.mkdir(parents=True, exist_ok=True)
    volume = np.stack(clip(depth, seed=seed)).astype(np.int16) * 4  # not uint8 on purpose
    image = sitk.GetImageFromArray(volume)
    image.SetSpacing((0.5, 0.5, 0.5))
    sitk.WriteImage(image, str(path))
    return path


def write_dicom_cine(
    path: Path,
    n: int = 10,
    seed: int = 3,
    frame_time_ms: float = 100.0,
    frames: np.ndarray | None = None,
    tags: dict[str, str] | None = None,
) -> Path:
    """An uncompressed multi-frame ultrasound DICOM (MONOCHROME2, 8-bit): ``n`` synthetic
    frames, or the given ``[T, H, W]`` uint8 ``frames``; ``tags`` set attributes such as
    ``PatientName``."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, UltrasoundMultiFrameImageStorage, generate_uid

    path.parent.mkdir(parents=True, exist_ok=True)
    frames = np.stack(clip(n, seed=seed)) if frames is None else frames
    n = len(frames)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    ds.PatientID = "P-dicom"
    for tag, value in (tags or {}).items():
        setattr(ds, tag, value)
    ds.Rows, ds.Columns = frames.shape[1:]
    ds.NumberOfFrames = n
    ds.FrameTime = frame_time_ms
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelRepresentation = 0
    ds.PixelData = frames.tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return path


def write_raw_dataset(root: Path) -> dict[str, int]:
    """A raw folder with every source kind plus two corrupt files; returns counts."""
    write_images(root / "images", n=4)
    write_mp4(root / "videos" / "clip.mp4")
    write_nifti(root / "volumes" / "vol.nii.gz")
    write_dicom_cine(root / "dicom" / "cine.dcm")
    (root / "broken").mkdir()
    (root / "broken" / "bad.png").write_bytes(b"not a png at all")
    (root / "broken" / "bad.mp4").write_bytes(b"\x00\x01garbage")
    return {"sources": 9, "corrupt": 2}
