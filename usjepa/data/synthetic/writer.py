"""Write the synthetic corpus (PNG frames + parquet manifest) and the labeled task.

The task follows the UltraBench layout: ``images/``, ``masks/scan/``, ``train_val.json``
and ``test.json`` whose records carry ``image``, ``scan_mask``, ``label``, ``patient`` and
``pathology`` (the class name).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from usjepa.data.synthetic.geometry import GeometryKind
from usjepa.data.synthetic.phantom import LESION_CLASSES
from usjepa.data.synthetic.render import draw_patient, render_frame

CORPUS_MANIFEST = "manifest.parquet"


def _write_png(path: Path, array: np.ndarray) -> None:
    if not cv2.imwrite(str(path), array):
        raise OSError(f"could not write {path}; check that the folder is writable and has space")


def _make_layout(root: str | Path) -> Path:
    """Create ``root/images`` and ``root/masks/scan``; return ``root`` as a Path."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks" / "scan").mkdir(parents=True, exist_ok=True)
    return root


def generate_corpus(
    root: str | Path,
    n_images: int = 2000,
    size: int = 128,
    frames_per_patient: int = 8,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Write an unlabeled pretraining corpus and return its manifest path.

    Frames from one patient share probe and anatomy, as clips of a study do. Labels are
    drawn uniformly over :data:`LESION_CLASSES` but are not written: the corpus is for
    self-supervised pretraining.

    Args:
        root: output folder; gets ``images/``, ``masks/scan/`` and ``manifest.parquet``.
        n_images: number of frames.
        size: square frame size in pixels.
        frames_per_patient: frames sharing one patient's anatomy.
        seed: everything is a pure function of this seed.
        progress: show a progress bar.
    """
    root = _make_layout(root)
    rows = []
    patient = None
    for i in tqdm(range(n_images), desc="synthetic corpus", disable=not progress):
        pid = i // frames_per_patient
        if i % frames_per_patient == 0:
            patient = draw_patient(size, np.random.default_rng([seed, 1, pid]))
        assert patient is not None
        rng = np.random.default_rng([seed, 2, i])
        image, mask = render_frame(patient, int(rng.integers(len(LESION_CLASSES))), rng)
        rel, mrel = f"images/{i:07d}.png", f"masks/scan/{i:07d}.png"
        _write_png(root / rel, image)
        _write_png(root / mrel, mask)
        rows.append(
            {
                "frame_path": rel,
                "dataset": "synthetic_bmode",
                "organ": "phantom",
                "source_kind": "image",
                "source_path": rel,
                "frame_index": 0,
                "patient_id": f"p{pid:05d}",
                "split": "train",
                "width": size,
                "height": size,
                "scan_mask": mrel,
                "probe": patient.geometry.kind,
            }
        )
    manifest = pd.DataFrame(rows)
    path = root / CORPUS_MANIFEST
    manifest.to_parquet(path, index=False)
    return path


def generate_task(
    root: str | Path,
    n_patients_train_val: int = 120,
    n_patients_test: int = 40,
    images_per_patient: int = 6,
    size: int = 128,
    seed: int = 1,
    progress: bool = True,
) -> Path:
    """Write the labeled lesion task in the UltraBench layout and return its folder.

    Each patient contributes ``images_per_patient`` frames with labels balanced over
    :data:`LESION_CLASSES`; splits are by patient. The seed differs from the corpus
    default so that no task image is a corpus frame.
    """
    root = _make_layout(root)
    n_classes = len(LESION_CLASSES)
    splits: dict[str, list[dict[str, Any]]] = {"train_val": [], "test": []}
    total = n_patients_train_val + n_patients_test
    for pid in tqdm(range(total), desc="synthetic task", disable=not progress):
        split = "train_val" if pid < n_patients_train_val else "test"
        prng = np.random.default_rng([seed, 3, pid])
        patient = draw_patient(size, prng)
        labels = prng.permutation(np.arange(images_per_patient) % n_classes)
        for j, label in enumerate(labels):
            rng = np.random.default_rng([seed, 4, pid, j])
            image, mask = render_frame(patient, int(label), rng)
            name = f"{pid:04d}_{j:02d}.png"
            _write_png(root / "images" / name, image)
            _write_png(root / "masks" / "scan" / name, mask)
            splits[split].append(
                {
                    "patient": pid,
                    "image": f"images/{name}",
                    "scan_mask": f"masks/scan/{name}",
                    "label": int(label),
                    "pathology": LESION_CLASSES[label],
                    "probe": patient.geometry.kind,
                }
            )
    for split, records in splits.items():
        (root / f"{split}.json").write_text(json.dumps(records, indent=1))
    (root / "classes.json").write_text(json.dumps(list(LESION_CLASSES)))
    return root


def contact_sheet(path: str | Path, size: int = 128, seed: int = 7) -> Path:
    """Save a PNG grid: one row per lesion class, each frame beside its scan mask outline.

    Columns alternate convex, linear and phased probes so every geometry is shown.
    """
    kinds: tuple[GeometryKind, ...] = ("convex", "linear", "phased", "convex")
    rows = []
    for label, name in enumerate(LESION_CLASSES):
        tiles = []
        for k, kind in enumerate(kinds):
            rng = np.random.default_rng([seed, label, k])
            image, mask = render_frame(draw_patient(size, rng, kind), label, rng)
            rgb = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
            contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(rgb, contours, -1, (0, 200, 255), 1)
            tiles += [cv2.cvtColor(image, cv2.COLOR_GRAY2BGR), rgb]
        row = np.concatenate([np.pad(t, ((2, 2), (2, 2), (0, 0))) for t in tiles], axis=1)
        label_band = np.zeros((14, row.shape[1], 3), np.uint8)
        cv2.putText(
            label_band,
            f"{label}: {name}",
            (4, 11),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4,
            (255, 255, 255),
            1,
            cv2.LINE_AA,
        )
        rows += [label_band, row]
    sheet = np.concatenate(rows, axis=0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_png(path, sheet)
    return path
