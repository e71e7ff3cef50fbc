"""Every benchmark task builds from a miniature of its real raw download (folder names,
file formats, separators and annotation files as released) into a task the probe reads."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from tests.data import task_miniatures as mini
from usjepa.cli import main
from usjepa.data.ingest.task_builders import TaskBuildError
from usjepa.data.ingest.ultrabench import build_ultrabench_task
from usjepa.data.tasks import ProbeDataModule

# task -> (writer, raw path below tmp, extra CLI arguments, class names the reader gives)
CASES = {
    "aul_mass": (mini.write_aul, "AUL", [], ["Normal", "Benign", "Malignant"]),
    "butterfly": (mini.write_butterfly, "butterfly_dataset", [], None),
    "fatty_liver": (
        mini.write_fatty_liver,
        "dataset_liver_bmodes_steatosis_assessment_IJCARS.mat",
        [],
        None,
    ),
    "gbcu": (mini.write_gbcu, "GBCU", [], ["normal", "benign", "malignant"]),
    "mmotu": (mini.write_mmotu, "MMOTU", [], None),
    "pocus": (mini.write_pocus, "covid19_ultrasound", [], ["regular", "pneumonia", "covid"]),
    "busbra": (
        mini.write_busbra,
        "BUSBRA",
        ["--fold-file", "{raw}/5-fold-cv.csv"],
        ["benign", "malignant"],
    ),
    "tn5000": (mini.write_tn5000, "TN5000", [], ["benign", "malignant"]),
}


def _records(out, split):
    path = out / f"{split}.json"
    return json.loads(path.read_text()) if path.exists() else []


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(CASES))
def test_task_builds_from_a_miniature_of_its_download(task, tmp_path, capsys):
    writer, raw_name, extra, classes = CASES[task]
    raw = tmp_path / raw_name
    written = writer(raw)
    out = tmp_path / task
    main(["data", "build-task", task, str(raw), str(out), *[a.format(raw=raw) for a in extra]])
    records = [r for s in ("train", "validation", "train_val", "test") for r in _records(out, s)]
    if task == "pocus":  # videos give several frames each: at least one record per file
        assert len(records) >= 2 * written
    else:
        assert len(records) == written
    assert _records(out, "test"), "no test split"
    for record in records:
        assert (out / record["image"]).is_file()
        scan = cv2.imread(str(out / record["scan_mask"]), cv2.IMREAD_GRAYSCALE)
        assert scan is not None and (scan > 0).mean() > 0.2, record["scan_mask"]
    dm = ProbeDataModule(str(out), img_size=32, val_fraction=0.25)
    dm.setup()
    if classes is not None:
        assert dm.class_names == classes
    seen = set(dm.labels("train_val")) | set(dm.labels("test"))
    assert seen <= set(range(len(dm.class_names)))  # the miniature may hold fewer classes
    groups = dm.groups("train_val")
    val = dm.val_mask(0)
    assert val.any() and not set(groups[val]) & set(groups[~val])
    batch = next(iter(dm.dataloader("test")))
    assert batch["image"].shape[1:] == (1, 32, 32)
    assert np.isfinite(batch["image"].numpy()).all()


@pytest.mark.slow
def test_fatty_liver_builds_from_the_folder_it_was_downloaded_to(tmp_path):
    written = mini.write_fatty_liver(tmp_path / "zenodo_1009146" / "liver.mat")
    out = build_ultrabench_task("fatty_liver", tmp_path / "zenodo_1009146", tmp_path / "fl")
    test = json.loads((out / "test.json").read_text())
    train = json.loads((out / "train.json").read_text())
    val = json.loads((out / "validation.json").read_text())
    assert len(test) + len(train) + len(val) == written
    assert not {r["patient"] for r in test} & {r["patient"] for r in train + val}


def test_fatty_liver_raw_errors_name_the_fix(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(TaskBuildError, match="expected one .mat file.*pass the file"):
        build_ultrabench_task("fatty_liver", tmp_path / "empty", tmp_path / "out")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(TaskBuildError, match=r"is a \.mat file"):
        build_ultrabench_task("fatty_liver", tmp_path / "notes.txt", tmp_path / "out")
    with pytest.raises(TaskBuildError, match="does not exist"):
        build_ultrabench_task("fatty_liver", tmp_path / "missing", tmp_path / "out")
    (tmp_path / "bad.mat").write_bytes(b"not a matlab file")
    with pytest.raises(TaskBuildError, match="ultrabench could not build fatty_liver"):
        build_ultrabench_task("fatty_liver", tmp_path / "bad.mat", tmp_path / "out")


def test_busbra_fold_file_errors_name_the_fix(tmp_path):
    from usjepa.data.ingest.task_builders import build_busbra

    raw = tmp_path / "BUSBRA"
    mini.write_busbra(raw)
    with pytest.raises(TaskBuildError, match=r"no fold 9; its folds are \[1, 2, 3, 4, 5\]"):
        build_busbra(
            raw, tmp_path / "o", fold_file=raw / "5-fold-cv.csv", test_fold=9, progress=False
        )
