"""Benchmark tasks from raw releases: BUS-BRA, TN5000 and any labeled image folder.

All three write the UltraBench layout that :class:`usjepa.data.ProbeDataModule` reads:
``images/*.png`` (grayscale), ``masks/scan/*.png`` (given, or detected when not),
``train_val.json`` and ``test.json`` (records with ``image``, ``scan_mask``, ``label``,
``patient`` and ``source``), and ``classes.json``. The test split is whole patients,
stratified by class, unless the release fixes one.

Raw layouts expected:

* **BUS-BRA** (Zenodo 8231412): ``Images/<ID>.png`` and ``bus_data.csv`` with columns
  ``ID`` (``bus_<case>-<side>``) and ``Pathology`` (benign/malignant); the patient is the
  case number in the ID (or a ``Case`` column when present). ``--fold-file`` takes the
  release's k-fold CSV (``ID`` plus a fold column, e.g. ``5-fold-cv.csv`` with ``kFold``)
  and makes fold ``--test-fold`` (default: the lowest-numbered) the test split; otherwise
  a seeded patient-level split is drawn.
* **TN5000** (Pascal VOC style): ``JPEGImages/*.jpg`` and ``Annotations/<stem>.xml`` whose
  ``object/name`` is 0 (benign) or 1 (malignant; any malignant box makes the image
  malignant); ``ImageSets/Main/test.txt`` fixes the test split when present. TN5000 has no
  patient ids, so each image is its own group: near-identical images of one patient may
  straddle splits, which is the release's limitation.
* **make-task**: a folder with one subfolder per class, or images plus a CSV with
  ``image`` (path relative to the folder), ``label`` (class name) and optional
  ``patient``, ``split`` (``train_val``/``test``) and ``scan_mask`` columns.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from usjepa.data.ingest.builder import check_pixel_aspect
from usjepa.data.ingest.readers import IMAGE_EXTS, gray
from usjepa.data.privacy import Pseudonyms, default_secret_path, load_secret
from usjepa.data.scan_region import detect_scan_region
from usjepa.data.tasks import grouped_split
from usjepa.errors import UsjepaError


class TaskBuildError(UsjepaError, ValueError):
    """A raw task release that does not have the expected layout."""


def split_by_patient(
    labels: np.ndarray, patients: np.ndarray, test_fraction: float, seed: int
) -> np.ndarray:
    """``"test"``/``"train_val"`` per row: whole patients, stratified by majority class."""
    test = grouped_split(patients.astype(str), labels, test_fraction, seed)
    return np.where(test, "test", "train_val")


def write_task(
    items: pd.DataFrame,
    out: str | Path,
    classes: list[str],
    progress: bool = True,
    names: Pseudonyms | None = None,
    blank_outside: bool = False,
    pixel_aspect: float = 1.0,
) -> Path:
    """Write a task from ``items`` with columns ``path`` (source image), ``label`` (int),
    ``patient``, ``split`` and optionally ``scan_mask`` (source mask path).

    ``names``: record patients, sources and image file names as keyed pseudonyms.
    ``blank_outside``: write images with the pixels outside the scan region black.
    ``pixel_aspect``: width over height of what one source pixel shows (images stored
    stretched); regions not given are detected at square pixels, images written as stored.
    """
    out = Path(out)
    for sub in ("images", "masks/scan"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    splits: dict[str, list[dict[str, Any]]] = {"train_val": [], "test": []}
    used: set[str] = set()
    for row in tqdm(
        items.itertuples(), total=len(items), desc=f"task {out.name}", disable=not progress
    ):
        source = Path(row.path)
        image = cv2.imread(str(source), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise TaskBuildError(f"cannot read image {source}; remove it or fix the file")
        image = gray(image, rgb=False)
        patient, origin = str(row.patient), str(source.name)
        if names is None:
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", source.stem) + ".png"
            if name in used:
                name = f"{source.parent.name}_{name}"
        else:
            # keyed on the path within the source folder: the same on every machine
            origin = names.source(out.name, str(getattr(row, "rel", source)))
            name = origin.rsplit(".", 1)[0] + ".png"
            patient = names.patient(out.name, patient)
        used.add(name)
        given = getattr(row, "scan_mask", None)
        if isinstance(given, str) and given:
            mask = cv2.imread(given, cv2.IMREAD_GRAYSCALE)
            if mask is None:
                raise TaskBuildError(f"cannot read scan mask {given}")
            mask = np.where(mask > 127, 255, 0).astype(np.uint8)
        else:
            mask = detect_scan_region(image, aspect=pixel_aspect)
        if blank_outside:
            image = cv2.bitwise_and(image, mask)
        cv2.imwrite(str(out / "images" / name), image)
        cv2.imwrite(str(out / "masks" / "scan" / name), mask)
        splits[row.split].append(
            {
                "image": f"images/{name}",
                "scan_mask": f"masks/scan/{name}",
                "label": int(row.label),
                "patient": patient,
                "source": origin,
            }
        )
    for split, records in splits.items():
        if not records:
            raise TaskBuildError(f"{out}: the {split} split is empty; add images or patients")
        (out / f"{split}.json").write_text(json.dumps(records, indent=1))
    (out / "classes.json").write_text(json.dumps(classes))
    return out


def _finish(items: pd.DataFrame, test_fraction: float, seed: int) -> pd.DataFrame:
    if "split" not in items or items["split"].isna().all():
        items["split"] = split_by_patient(
            items["label"].to_numpy(), items["patient"].to_numpy(), test_fraction, seed
        )
    bad = set(items["split"]) - {"train_val", "test"}
    if bad:
        raise TaskBuildError(f"unknown split values {sorted(bad)}; use train_val or test")
    leaking = items.groupby("patient")["split"].nunique()
    if (leaking > 1).any():
        raise TaskBuildError(
            f"patients in both splits: {list(leaking.index[leaking > 1][:5])}; "
            "give each patient one split"
        )
    return items


def make_task(
    source: str | Path,
    out: str | Path,
    labels_csv: str | Path | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    progress: bool = True,
    pseudonymize: bool = True,
    secret: str | Path | None = None,
    blank_outside: bool = True,
    pixel_aspect: float = 1.0,
) -> Path:
    """Any labeled image folder to a task (class subfolders, or a CSV of labels).

    Data of one's own (a hospital's export, say) is built private by default: patients,
    sources and image file names become keyed pseudonyms (:mod:`usjepa.data.privacy`;
    ``secret`` defaults to ``SOURCE/../.usjepa-secret``) and the pixels outside each
    image's scan region are written black. ``pseudonymize=False`` and
    ``blank_outside=False`` keep names and screens as they are. ``pixel_aspect``: for
    images stored stretched (:func:`write_task`).
    """
    src = Path(source)
    if not src.is_dir():
        raise TaskBuildError(f"{src} is not a folder of images")
    check_pixel_aspect(pixel_aspect)
    names = None
    if pseudonymize:
        names = Pseudonyms(load_secret(secret or default_secret_path(src), out))
    if labels_csv is not None:
        table = pd.read_csv(labels_csv)
        for column in ("image", "label"):
            if column not in table:
                raise TaskBuildError(f"{labels_csv} needs an {column!r} column")
        classes = sorted(table["label"].astype(str).unique())
        items = pd.DataFrame(
            {
                "path": [str(src / p) for p in table["image"]],
                "label": table["label"].astype(str).map(classes.index),
                "patient": table["patient"].astype(str)
                if "patient" in table
                else table["image"].astype(str),
            }
        )
        if "split" in table:
            items["split"] = table["split"].to_numpy()
        if "scan_mask" in table:
            items["scan_mask"] = [
                str(src / p) if isinstance(p, str) else "" for p in table["scan_mask"]
            ]
    else:
        classes = sorted(p.name for p in src.iterdir() if p.is_dir())
        if len(classes) < 2:
            raise TaskBuildError(
                f"{src}: expected one subfolder per class (at least 2), found {classes}; "
                "or pass --labels CSV"
            )
        rows = [
            (str(path), k, path.relative_to(src / name).with_suffix("").as_posix())
            for k, name in enumerate(classes)
            for path in sorted((src / name).rglob("*"))
            if path.suffix.lower() in IMAGE_EXTS
        ]
        items = pd.DataFrame(rows, columns=["path", "label", "patient"])
        # a nested folder under the class folder names the patient
        items["patient"] = items["patient"].map(lambda p: p.split("/")[0] if "/" in p else p)
    items["rel"] = [Path(p).relative_to(src).as_posix() for p in items["path"]]
    finished = _finish(items, test_fraction, seed)
    return write_task(finished, out, classes, progress, names, blank_outside, pixel_aspect)


def build_busbra(
    raw: str | Path,
    out: str | Path,
    fold_file: str | Path | None = None,
    test_fold: int | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """BUS-BRA release to a benign/malignant task with patient-level splits."""
    raw = Path(raw)
    meta = raw / "bus_data.csv"
    if not meta.exists():
        raise TaskBuildError(f"{meta} not found; point RAW at the unpacked BUS-BRA release")
    table = pd.read_csv(meta)
    for column in ("ID", "Pathology"):
        if column not in table:
            raise TaskBuildError(f"{meta} lacks the {column!r} column")
    classes = ["benign", "malignant"]
    pathology = table["Pathology"].astype(str).str.lower().str.strip()
    if not pathology.isin(classes).all():
        raise TaskBuildError(
            f"{meta}: Pathology values {sorted(set(pathology))}; expected {classes}"
        )
    if "Case" in table:
        patients = table["Case"].astype(str)
    else:
        patients = table["ID"].astype(str).str.extract(r"bus_(\d+)", expand=False)
    items = pd.DataFrame(
        {
            "path": [str(raw / "Images" / f"{i}.png") for i in table["ID"]],
            "label": pathology.map(classes.index).to_numpy(),
            "patient": patients.fillna(table["ID"].astype(str)).to_numpy(),
        }
    )
    if fold_file is not None:
        folds = pd.read_csv(fold_file)
        fold_col = next((c for c in folds.columns if c != "ID"), None)
        if "ID" not in folds or fold_col is None:
            raise TaskBuildError(f"{fold_file}: expected columns ID and a fold number")
        fold = table["ID"].map(dict(zip(folds["ID"], folds[fold_col])))
        if fold.isna().any():
            missing = list(table["ID"][fold.isna()][:3])
            raise TaskBuildError(f"{fold_file} has no fold for {missing}; use the release's file")
        numbers = sorted(int(v) for v in fold.unique())
        if test_fold is None:
            test_fold = numbers[0]
        if test_fold not in numbers:
            raise TaskBuildError(
                f"{fold_file}: no fold {test_fold}; its folds are {numbers} (--test-fold)"
            )
        items["split"] = np.where(fold.to_numpy() == test_fold, "test", "train_val")
    return write_task(_finish(items, test_fraction, seed), out, classes, progress)


def build_tn5000(
    raw: str | Path,
    out: str | Path,
    test_fraction: float = 0.2,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """TN5000 (VOC layout) to a benign/malignant task."""
    raw = Path(raw)
    ann_dir, img_dir = raw / "Annotations", raw / "JPEGImages"
    if not ann_dir.is_dir() or not img_dir.is_dir():
        raise TaskBuildError(f"{raw}: expected Annotations/ and JPEGImages/ (VOC layout)")
    rows = []
    for xml in sorted(ann_dir.glob("*.xml")):
        names = [o.findtext("name", "").strip() for o in ET.parse(xml).getroot().iter("object")]
        if not names or not set(names) <= {"0", "1"}:
            raise TaskBuildError(f"{xml}: object names {names}; expected 0 or 1")
        image = next(img_dir.glob(f"{xml.stem}.*"), None)
        if image is None:
            raise TaskBuildError(f"no image for {xml.name} in {img_dir}")
        rows.append((str(image), int("1" in names), xml.stem))
    items = pd.DataFrame(rows, columns=["path", "label", "patient"])
    test_list = raw / "ImageSets" / "Main" / "test.txt"
    if test_list.exists():
        test_ids = set(test_list.read_text().split())
        items["split"] = np.where(items["patient"].isin(test_ids), "test", "train_val")
    return write_task(_finish(items, test_fraction, seed), out, ["benign", "malignant"], progress)
