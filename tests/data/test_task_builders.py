"""BUS-BRA, TN5000 and make-task builders write tasks the probe reader accepts."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest

from tests.data.raw_sources import clip
from tests.data.task_miniatures import write_pocus
from usjepa.cli import main
from usjepa.data.ingest.task_builders import TaskBuildError, build_busbra, build_tn5000, make_task
from usjepa.data.tasks import ProbeDataModule


def _frames(n: int, seed: int = 0) -> list[np.ndarray]:
    return clip(n, size=64, seed=seed)


def _read(root) -> ProbeDataModule:
    dm = ProbeDataModule(str(root), img_size=32, val_fraction=0.25)
    dm.setup()
    return dm


def test_busbra_patient_level_split(tmp_path):
    raw = tmp_path / "BUSBRA"
    (raw / "Images").mkdir(parents=True)
    rows = []
    for case in range(12):
        for side, frame in zip("lr", _frames(2, seed=case)):
            name = f"bus_{case:04d}-{side}"
            cv2.imwrite(str(raw / "Images" / f"{name}.png"), frame)
            rows.append({"ID": name, "Pathology": "malignant" if case % 3 == 0 else "benign"})
    pd.DataFrame(rows).to_csv(raw / "bus_data.csv", index=False)
    out = build_busbra(raw, tmp_path / "busbra", test_fraction=0.25, progress=False)
    dm = _read(out)
    assert dm.class_names == ["benign", "malignant"] and dm.num_classes == 2
    train, test = (
        pd.DataFrame(json.loads((out / f).read_text())) for f in ("train_val.json", "test.json")
    )
    assert not set(train["patient"]) & set(test["patient"])  # patient-level
    assert set(test["label"]) == {0, 1}  # stratified
    assert len(train) + len(test) == 24
    # the official fold file fixes the split instead
    folds = pd.DataFrame({"ID": [r["ID"] for r in rows], "kFold": [i // 2 % 4 for i in range(24)]})
    folds.to_csv(tmp_path / "folds.csv", index=False)
    out2 = build_busbra(
        raw, tmp_path / "b2", fold_file=tmp_path / "folds.csv", test_fold=1, progress=False
    )
    assert len(json.loads((out2 / "test.json").read_text())) == 6


def test_tn5000_voc_layout(tmp_path):
    raw = tmp_path / "TN5000"
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (raw / sub).mkdir(parents=True)
    for i, frame in enumerate(_frames(10)):
        cv2.imwrite(str(raw / "JPEGImages" / f"{i:05d}.jpg"), frame)
        names = ["1", "0"] if i % 2 else ["0"]
        objects = "".join(f"<object><name>{n}</name></object>" for n in names)
        (raw / "Annotations" / f"{i:05d}.xml").write_text(f"<annotation>{objects}</annotation>")
    (raw / "ImageSets/Main/test.txt").write_text("00008\n00009\n")
    out = build_tn5000(raw, tmp_path / "tn5000", progress=False)
    test = json.loads((out / "test.json").read_text())
    assert [r["label"] for r in test] == [0, 1]
    assert _read(out).num_classes == 2


def test_make_task_from_class_folders_and_from_csv(tmp_path, capsys):
    src = tmp_path / "mine"
    for k, cls in enumerate(["normal", "abnormal"]):
        for p in range(4):
            for j, frame in enumerate(_frames(2, seed=10 * k + p)):
                path = src / cls / f"pat{k}{p}" / f"{j}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(path), frame)
    out = make_task(src, tmp_path / "task", test_fraction=0.25, progress=False)
    dm = _read(out)
    assert dm.class_names == ["abnormal", "normal"]
    records = json.loads((out / "train_val.json").read_text())
    assert len({r["patient"] for r in records}) == 6  # folders below the class are patients
    mask = cv2.imread(str(out / records[0]["scan_mask"]), 0)
    assert 0.2 < (mask > 0).mean() < 0.95  # detected, not given
    # CSV form, through the CLI, with a fixed split column
    paths = sorted(p.relative_to(src).as_posix() for p in src.rglob("*.png"))
    labels = pd.DataFrame(
        {
            "image": paths,
            "label": [p.split("/")[0] for p in paths],
            "patient": [p.split("/")[1] for p in paths],
            "split": ["test" if p.split("/")[1].endswith("0") else "train_val" for p in paths],
        }
    )
    labels.to_csv(tmp_path / "labels.csv", index=False)
    main(
        [
            "data",
            "make-task",
            str(src),
            str(tmp_path / "t2"),
            "--labels",
            str(tmp_path / "labels.csv"),
        ]
    )
    assert len(json.loads((tmp_path / "t2" / "test.json").read_text())) == 4
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary.endswith(
        ": 12 train_val and 4 test images, 8 patients, 2 classes (abnormal, normal)"
    )


def test_make_task_errors_name_the_fix(tmp_path):
    (tmp_path / "one").mkdir()
    with pytest.raises(TaskBuildError, match="one subfolder per class"):
        make_task(tmp_path, tmp_path / "out", progress=False)
    with pytest.raises(TaskBuildError, match="bus_data.csv"):
        build_busbra(tmp_path, tmp_path / "out", progress=False)


@pytest.mark.slow
def test_pocus_built_by_ultrabench_reads_with_its_official_validation(tmp_path, capsys):
    """`usjepa data build-task pocus` runs UltraBench's own preprocessing; the reader keeps
    its train / validation / test splits and its class names."""
    write_pocus(tmp_path / "raw")
    main(["data", "build-task", "pocus", str(tmp_path / "raw"), str(tmp_path / "pocus")])
    out = tmp_path / "pocus"
    assert {"train.json", "validation.json", "test.json"} <= {p.name for p in out.iterdir()}
    dm = _read(out)
    assert dm.class_names == ["regular", "pneumonia", "covid"]
    train = json.loads((out / "train.json").read_text())
    val = json.loads((out / "validation.json").read_text())
    assert len(dm.labels("train_val")) == len(train) + len(val)
    official = dm.val_mask(0)
    assert official.sum() == len(val) and np.array_equal(official, dm.val_mask(3))
    groups = dm.groups("train_val")
    assert not set(groups[official]) & set(groups[~official])  # videos do not straddle
    batch = next(iter(dm.dataloader("test")))
    assert batch["image"].shape[1:] == (1, 32, 32)
    with pytest.raises(SystemExit):  # a second build into the same folder is refused
        main(["data", "build-task", "pocus", str(tmp_path / "raw"), str(out)])
    assert "already holds a task" in capsys.readouterr().err


def test_unknown_raw_layout_is_explained(tmp_path):
    from usjepa.data.ingest.ultrabench import build_ultrabench_task

    (tmp_path / "raw").mkdir()
    with pytest.raises(TaskBuildError, match="pocus|raw"):
        build_ultrabench_task("pocus", tmp_path / "raw", tmp_path / "out")
