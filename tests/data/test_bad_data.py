"""Unreadable frames while training: skipped and counted per dataset, up to a limit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from usjepa.data import CorpusDataModule
from usjepa.data.images import ImageReadError
from usjepa.masks import MultiBlockMaskGenerator


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from usjepa.data.synthetic import generate_corpus

    root = tmp_path_factory.mktemp("bad_corpus")
    generate_corpus(root, n_images=400, size=32, frames_per_patient=4, progress=False)
    return root


def damage(root, frames: list[str]) -> None:
    """Corrupt bytes, a cut file, an empty file and a text file, in turn."""
    for k, rel in enumerate(frames):
        path = root / rel
        data = path.read_bytes()
        if k % 4 == 0:
            path.write_bytes(np.random.default_rng(k).bytes(len(data)))
        elif k % 4 == 1:
            path.write_bytes(data[: len(data) // 3])
        elif k % 4 == 2:
            path.write_bytes(b"")
        else:
            path.write_text("not an image")


def _epoch(dm: CorpusDataModule) -> int:
    """Run the training loader once through the batch hook; frames seen."""
    seen = 0
    for batch in dm.train_dataloader():
        batch = dm.on_after_batch_transfer(batch, 0)
        seen += len(batch)
        assert batch.bad_rows is None  # the hook consumed them
    return seen


def _dm(root, **kw) -> CorpusDataModule:
    dm = CorpusDataModule(
        str(root / "manifest.parquet"),
        MultiBlockMaskGenerator(4),
        img_size=32,
        batch_size=1,
        val_fraction=0.0001,
        seed=0,
        **kw,
    )
    dm.setup("fit")
    return dm


def test_one_percent_bad_frames_are_skipped_counted_and_listed(corpus, tmp_path):
    table = pd.read_parquet(corpus / "manifest.parquet")
    dm = _dm(corpus)
    train = [dm.table.frame_path[int(r)] for r in dm.train_set.rows]
    bad = train[5 : 5 + len(train) // 100]  # 1 %
    damage(corpus, bad)
    dm = _dm(corpus)  # statistics measured with the damage in place
    assert _epoch(dm) == len(dm.train_set)  # every sample slot was filled
    skipped = {dm.table.frame_path[r] for r in dm.bad_rows}
    assert skipped == set(bad)
    dm.teardown("fit")
    listed = pd.read_csv(corpus / "skipped_frames.csv")
    assert set(listed["frame_path"]) == set(bad)
    assert set(listed["dataset"]) <= set(table["dataset"])


def test_more_bad_frames_than_allowed_stop_with_the_list(corpus, tmp_path):
    import shutil

    root = tmp_path / "c"
    shutil.copytree(corpus, root)
    dm = _dm(root)
    train = [dm.table.frame_path[int(r)] for r in dm.train_set.rows]
    damage(root, train[: len(train) // 10])  # 10 %
    dm = _dm(root, max_bad_fraction=0.02)
    with pytest.raises(ImageReadError, match="max_bad_fraction") as err:
        _epoch(dm)
    assert "skipped_frames.csv" in str(err.value)
    assert len(pd.read_csv(root / "skipped_frames.csv")) > 0.02 * len(dm.train_set)
