import gzip
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from usjepa.data.tasks import ProbeDataModule, TaskError

# The benchmark's real split files (MIT, see tests/fixtures/SOURCE.md), gzipped.
SPLITS = Path(__file__).resolve().parents[1] / "fixtures" / "ultrabench_splits"
TASKS = ["aul_mass", "fatty_liver", "gbcu", "mmotu", "pocus", "butterfly"]
SIZES = {  # (train_val, test) records in the real files: the fixture is whole
    "aul_mass": (588, 147),
    "fatty_liver": (440, 110),
    "gbcu": (1133, 122),
    "mmotu": (1000, 469),
    "pocus": (2128, 605),
    "butterfly": (None, 6751),
}


def _split(task: str, split: str) -> list[dict]:
    path = SPLITS / task / f"{split}.json.gz"
    return json.loads(gzip.decompress(path.read_bytes())) if path.exists() else []


@pytest.mark.parametrize("task", TASKS)
def test_vendored_split_files_are_whole(task):
    n_tv, n_test = SIZES[task]
    assert len(_split(task, "test")) == n_test
    if n_tv is not None:
        assert len(_split(task, "train_val")) == n_tv


def _materialise(task: str, dest: Path, limit: int = 60) -> Path:
    """Copy a real split file (first ``limit`` records of each) and write tiny images."""
    dest.mkdir(parents=True)
    for split in ("train_val", "test"):
        records = _split(task, split)[:limit]
        if not records:  # butterfly ships only test.json: reuse part of it as train_val
            records = _split(task, "test")[limit : 2 * limit]
        (dest / f"{split}.json").write_text(json.dumps(records))
        for r in records:
            for key in ("image", "scan_mask"):
                path = dest / r[key]
                path.parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(path), np.full((20, 24), 40 + r["label"] * 20, np.uint8))
    return dest


@pytest.mark.parametrize("task", TASKS)
def test_reader_on_real_split_files(task, tmp_path):
    root = _materialise(task, tmp_path / task)
    dm = ProbeDataModule(str(root), img_size=16)
    dm.setup()
    records = json.loads((root / "train_val.json").read_text())
    expected_field = (
        "patient" if "patient" in records[0] else ("source" if "source" in records[0] else "image")
    )
    assert list(dm.groups("train_val")) == [str(r[expected_field]) for r in records]
    val = dm.val_mask(0)
    groups = dm.groups("train_val")
    assert not set(groups[val]) & set(groups[~val])
    batch = next(iter(dm.dataloader("test")))
    assert batch["image"].shape[1:] == (1, 16, 16)
    assert dm.num_classes >= int(max(r["label"] for r in records)) + 1


def test_missing_split_file_is_explained(tmp_path):
    with pytest.raises(TaskError, match="train_val.json"):
        ProbeDataModule(str(tmp_path)).setup()


def test_synthetic_task_groups_by_patient(task_dir, tmp_path):
    dm = ProbeDataModule(str(task_dir), img_size=32)
    dm.setup()
    assert dm.num_classes == 6 and dm.class_names[1] == "anechoic_cyst"
    assert len(set(dm.groups("train_val"))) == 24
    shutil.rmtree(tmp_path)


def test_letterbox_keeps_the_aspect_ratio_and_pads_black():
    from usjepa.data.tasks import letterbox

    image = np.full((60, 30), 200, np.uint8)  # portrait
    out = letterbox(image, 40)
    assert out.shape == (40, 40)
    assert (out[:, :20] == 200).all() and (out[:, 20:] == 0).all()
    wide = letterbox(np.full((10, 50), 7, np.uint8), 100)  # enlarged, padded below
    assert (wide[:20] == 7).all() and (wide[20:] == 0).all()


def test_zoo_encoders_read_the_task_at_their_own_size(task_dir):
    """A zoo encoder is fed at its input size from the files (letterboxed when it keeps
    the aspect ratio), told the task's normalisation; our own encoders at the task's."""
    import torch

    from usjepa.eval.features import task_features

    class Recorder(torch.nn.Module):
        num_prefix_tokens = 0

        def __init__(self, zoo: bool, resize: str = "square") -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))
            self.shapes: list[tuple] = []
            if zoo:
                self.input_mean, self.input_std, self.img_size, self.resize = 0.0, 1.0, 48, resize

        def forward(self, images):
            self.shapes.append(tuple(images.shape))
            return images.flatten(2).transpose(1, 2)[:, :4] * self.w

    dm = ProbeDataModule(str(task_dir), img_size=32)
    dm.setup()
    ours, zoo, boxed = Recorder(False), Recorder(True), Recorder(True, "longest_pad")
    for enc in (ours, zoo, boxed):
        feats = task_features(enc, dm, "test", ("mean",), None)
        assert len(feats["mean"]) == len(dm.labels("test"))
    assert ours.shapes[0][-2:] == (32, 32) and zoo.shapes[0][-2:] == (48, 48)
    assert (zoo.input_mean, zoo.input_std) == (dm.mean, dm.std)
    loader = dm.dataloader("test", img_size=48, letterbox=True)
    assert boxed.shapes[0][-2:] == (48, 48) and next(iter(loader))["image"].shape[-1] == 48
