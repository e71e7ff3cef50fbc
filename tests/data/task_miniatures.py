"""Miniatures of the benchmark tasks' raw downloads: the releases' folder names, file
formats, separators and annotation files, with a few synthetic frames each.

Each writer lays out what the builder for that task reads, as the release ships it:

- ``aul``: ``{Normal,Benign,Malignant}/image/<n>.jpg`` with polygon JSONs (``[[x, y],
  ...]``) under ``segmentation/{outline,liver,mass}/<n>.json`` (Zenodo 7272660).
- ``butterfly``: ``training/<patient>/<class>/*.png`` and ``test/<patient>/<class>/*.png``
  (the 2018 hackathon release), patients numbered.
- ``fatty_liver``: one MATLAB file, a 1 x N struct ``data`` with fields ``id``, ``class``,
  ``fat`` and ``images`` (frames x height x width, uint8), as in Zenodo 1009146's
  ``dataset_liver_bmodes_steatosis_assessment_IJCARS.mat``.
- ``gbcu``: ``imgs/*.jpg``, ``train.txt`` / ``test.txt`` (``name,label`` lines, no
  header) and ``bbox_annot.json`` (``{name: {"dim": [w, h], "bbs": [[label, box]]}}``).
- ``mmotu``: ``OTU_2d/images/<n>.JPG``, ``OTU_2d/annotations/<n>.PNG`` (colour-coded
  classes) and ``<n>_binary.PNG``, ``train.txt`` / ``val.txt`` (stems) and
  ``train_cls.txt`` / ``val_cls.txt`` (``<n>.JPG  <label>``, two spaces).
- ``pocus``: the ``covid19_ultrasound`` repository's ``data/pocus_images/convex`` and
  ``data/pocus_videos/convex``, class in the file name's prefix.
- ``busbra``: ``Images/bus_<case>-<side>.png``, ``bus_data.csv`` (``ID``, ``Histology``,
  ``Pathology``, ``BIRADS``, ``Device``, ``Width``, ``Height``, ``Side``, ``BBOX``) and
  ``5-fold-cv.csv`` (``ID``, ``kFold``).
- ``tn5000``: Pascal VOC: ``JPEGImages/*.jpg``, ``Annotations/*.xml`` (object names 0 / 1)
  and ``ImageSets/Main/{train,val,test,trainval}.txt``.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from tests.data.raw_sources import clip


def _frames(n: int, seed: int, size: int = 64) -> list[np.ndarray]:
    return clip(n, size=size, seed=seed)


def _box_polygon(size: int, margin: int) -> list[list[int]]:
    a, b = margin, size - 1 - margin
    return [[a, a], [b, a], [b, b], [a, b]]


def write_aul(root: Path, per_class: int = 10) -> int:
    for c, name in enumerate(("Normal", "Benign", "Malignant")):
        for i in range(per_class):
            stem = str(100 * c + i + 1)
            folder = root / name
            (folder / "image").mkdir(parents=True, exist_ok=True)
            frame = _frames(1, seed=100 * c + i)[0]
            cv2.imwrite(
                str(folder / "image" / f"{stem}.jpg"), cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
            )
            for part, margin in (("outline", 2), ("liver", 12), ("mass", 24)):
                if part == "mass" and name == "Normal":
                    continue  # normal livers have no mass outline in the release
                seg = folder / "segmentation" / part
                seg.mkdir(parents=True, exist_ok=True)
                (seg / f"{stem}.json").write_text(json.dumps(_box_polygon(64, margin)))
    return 3 * per_class


def write_butterfly(root: Path, classes: tuple[str, ...] = ("carotid", "lungs", "bladder")) -> int:
    n = 0
    for subset, patients in (("training", (1, 2, 3, 4, 5)), ("test", (6, 7))):
        for p in patients:
            for c, name in enumerate(classes):
                folder = root / subset / str(p) / name
                folder.mkdir(parents=True, exist_ok=True)
                for i, frame in enumerate(_frames(2, seed=1000 * p + 10 * c)):
                    cv2.imwrite(str(folder / f"{i:04d}.png"), frame)
                    n += 1
    return n


# UltraBench's scan-mask steps for fatty liver, GBCU and MMOTU drop parts under 2,000 or
# 5,000 pixels, sized for the releases' frames (several hundred pixels a side): their
# miniatures use 160 px frames so that the fan survives as it does in the real data
BIG = 160


def write_fatty_liver(path: Path, patients: int = 10, frames: int = 3) -> int:
    """The one ``.mat`` file, as ``scipy.io.loadmat`` reads the real one back."""
    from scipy.io import savemat

    record = np.dtype([("id", "O"), ("class", "O"), ("fat", "O"), ("images", "O")])
    data = np.zeros((1, patients), dtype=record)
    for k in range(patients):
        label = int(k % 2)
        data[0, k] = (
            np.array([[k + 1]], dtype=np.float64),
            np.array([[label]], dtype=np.float64),
            np.array([[30.0 * label + k]], dtype=np.float64),
            np.stack(_frames(frames, seed=k, size=BIG)).astype(np.uint8),
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(str(path), {"data": data})
    return patients * frames


def write_gbcu(root: Path, per_class: int = 10, test_per_class: int = 2) -> int:
    (root / "imgs").mkdir(parents=True, exist_ok=True)
    boxes: dict[str, dict[str, object]] = {}
    lines: dict[str, list[str]] = {"train": [], "test": []}
    k = 0
    for label in range(3):
        for i in range(per_class + test_per_class):
            k += 1
            name = f"im{k:05d}.jpg"
            cv2.imwrite(str(root / "imgs" / name), _frames(1, seed=k, size=BIG)[0])
            roi = "nml" if label == 0 else "abn"
            boxes[name] = {"dim": [BIG, BIG], "bbs": [[roi, [20, 24, 80, 88]]]}
            lines["test" if i < test_per_class else "train"].append(f"{name},{label}")
    (root / "bbox_annot.json").write_text(json.dumps(boxes))
    for split, rows in lines.items():
        (root / f"{split}.txt").write_text("\n".join(rows) + "\n")
    return k


# the release's colour code for the eight tumour classes (background black)
MMOTU_COLOURS = [
    (64, 0, 0),
    (0, 64, 0),
    (0, 0, 64),
    (64, 0, 64),
    (64, 64, 0),
    (64, 64, 64),
    (0, 128, 0),
    (0, 0, 128),
]


def write_mmotu(root: Path, train_per_class: int = 5, test_per_class: int = 1) -> int:
    otu = root / "OTU_2d"
    (otu / "images").mkdir(parents=True, exist_ok=True)
    (otu / "annotations").mkdir(parents=True, exist_ok=True)
    stems: dict[str, list[tuple[str, int]]] = {"train": [], "val": []}
    k = 0
    for label in range(8):
        for i in range(train_per_class + test_per_class):
            k += 1
            stem = str(k)
            frame = _frames(1, seed=k, size=BIG)[0]
            cv2.imwrite(
                str(otu / "images" / f"{stem}.JPG"), cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
            )
            rgb = np.zeros((BIG, BIG, 3), np.uint8)
            rgb[40:80, 48:88] = MMOTU_COLOURS[label]
            # written as RGB: OpenCV takes BGR
            cv2.imwrite(str(otu / "annotations" / f"{stem}.PNG"), rgb[..., ::-1])
            binary = (rgb.max(axis=-1) > 0).astype(np.uint8) * 255
            cv2.imwrite(str(otu / "annotations" / f"{stem}_binary.PNG"), binary)
            stems["val" if i < test_per_class else "train"].append((stem, label))
    for prefix, rows in stems.items():
        (otu / f"{prefix}.txt").write_text("\n".join(s for s, _ in rows) + "\n")
        (otu / f"{prefix}_cls.txt").write_text("".join(f"{s}.JPG  {lab}\n" for s, lab in rows))
    return k


def write_pocus(root: Path, n_per_class: int = 8) -> int:
    images, videos = root / "data/pocus_images/convex", root / "data/pocus_videos/convex"
    images.mkdir(parents=True, exist_ok=True)
    videos.mkdir(parents=True, exist_ok=True)
    for c, prefix in enumerate(("Reg", "Pne", "Cov")):
        for i in range(n_per_class):
            frames = _frames(4, seed=10 * c + i)
            cv2.imwrite(str(images / f"{prefix}_img{i}.png"), frames[0])
            writer = cv2.VideoWriter(
                str(videos / f"{prefix}_vid{i}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 3, (64, 64)
            )
            for f in frames:
                writer.write(cv2.cvtColor(f, cv2.COLOR_GRAY2BGR))
            writer.release()
    return 3 * n_per_class


def write_busbra(root: Path, cases: int = 12) -> int:
    (root / "Images").mkdir(parents=True, exist_ok=True)
    rows, folds = [], []
    n = 0
    for case in range(1, cases + 1):
        pathology = "malignant" if case % 3 == 0 else "benign"
        for side in ("l", "r")[: 1 + case % 2]:
            ident = f"bus_{case:04d}-{side}"
            cv2.imwrite(
                str(root / "Images" / f"{ident}.png"), _frames(1, seed=case * 7 + len(side))[0]
            )
            rows.append(
                f"{ident},{'Carcinoma' if pathology == 'malignant' else 'Fibroadenoma'},"
                f"{pathology},{4 if pathology == 'malignant' else 2},GE,64,64,"
                f'{"left" if side == "l" else "right"},"[1, 1, 30, 30]"'
            )
            folds.append(f"{ident},{case % 5 + 1}")
            n += 1
    header = "ID,Histology,Pathology,BIRADS,Device,Width,Height,Side,BBOX"
    (root / "bus_data.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    (root / "5-fold-cv.csv").write_text("ID,kFold\n" + "\n".join(folds) + "\n")
    return n


def write_tn5000(root: Path, n: int = 20) -> int:
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    stems = []
    for k in range(n):
        stem = f"{k:06d}"
        stems.append(stem)
        cv2.imwrite(
            str(root / "JPEGImages" / f"{stem}.jpg"),
            cv2.cvtColor(_frames(1, seed=k)[0], cv2.COLOR_GRAY2BGR),
        )
        objects = "".join(
            f"<object><name>{lab}</name><pose>Unspecified</pose><truncated>0</truncated>"
            f"<difficult>0</difficult><bndbox><xmin>10</xmin><ymin>10</ymin>"
            f"<xmax>40</xmax><ymax>40</ymax></bndbox></object>"
            for lab in ([k % 2] if k % 4 else [0, 1])
        )
        (root / "Annotations" / f"{stem}.xml").write_text(
            f"<annotation><folder>JPEGImages</folder><filename>{stem}.jpg</filename>"
            f"<size><width>64</width><height>64</height><depth>3</depth></size>{objects}</annotation>"
        )
    split = {"train": stems[:12], "val": stems[12:15], "test": stems[15:]}
    split["trainval"] = split["train"] + split["val"]
    for name, rows in split.items():
        (root / "ImageSets" / "Main" / f"{name}.txt").write_text("\n".join(rows) + "\n")
    return n
