import subprocess
import sys

import cv2
import numpy as np
import pandas as pd

from usjepa.data.validate import validate_manifest


def _manifest(tmp_path):
    for name in ("a.png", "b.png", "c.png"):
        cv2.imwrite(str(tmp_path / name), np.zeros((8, 8), np.uint8))
    table = pd.DataFrame(
        {
            "frame_path": ["a.png", "b.png", "b.png", "missing.png", "c.png"],
            "split": ["train", "train", "val", "tset", "test"],
            "patient_id": ["p1", "p1", "p1", "p2", "p3"],
            "label": [0, 1, 1, 7, 2],
            "width": [8, 8, 8, 0, 8],
        }
    )
    path = tmp_path / "m.csv"
    table.to_csv(path, index=False)
    return path


def test_every_problem_is_reported_with_its_row(tmp_path):
    problems = validate_manifest(_manifest(tmp_path), num_classes=3, progress=False)
    found = {(p.row, p.column) for p in problems}
    assert {(1, "frame_path"), (2, "frame_path")} <= found  # duplicate b.png
    assert (3, "split") in found  # "tset"
    assert (3, "label") in found  # 7 >= 3 classes
    assert (3, "width") in found
    assert (3, "frame_path") in found  # missing file
    assert {(0, "patient_id"), (1, "patient_id"), (2, "patient_id")} <= found  # p1 in 2 splits
    assert not any(p.row == 4 for p in problems)  # the clean row stays clean


def test_clean_manifest_passes_and_cli_exit_codes(tmp_path, corpus_dir):
    assert validate_manifest(corpus_dir / "manifest.parquet", progress=False) == []
    ok = subprocess.run(
        [sys.executable, "-m", "usjepa", "data", "validate", str(corpus_dir / "manifest.parquet")],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0 and "no problems" in ok.stdout
    report = tmp_path / "report.csv"
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "usjepa",
            "data",
            "validate",
            str(_manifest(tmp_path)),
            "--num-classes",
            "3",
            "--report",
            str(report),
        ],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and "duplicate frame path" in bad.stdout
    assert len(pd.read_csv(report)) >= 8
