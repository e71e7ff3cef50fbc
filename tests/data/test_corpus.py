import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from usjepa.data import CorpusDataModule
from usjepa.data.images import ImageReadError
from usjepa.data.manifest import ManifestError
from usjepa.masks import MultiBlockMaskGenerator


def _dm(manifest, **kw):
    return CorpusDataModule(
        str(manifest), MultiBlockMaskGenerator(4), img_size=32, batch_size=8, **kw
    )


def test_batches_have_images_and_masks_inside_the_scan_region(corpus_dir):
    dm = _dm(corpus_dir / "manifest.parquet", val_fraction=0.2)
    dm.setup("fit")
    assert len(dm.train_set) + len(dm.val_set) == 48 and len(dm.val_set) > 0
    batch = next(iter(dm.train_dataloader()))
    assert batch.image.shape == (8, 1, 32, 32)
    assert batch.context.shape[0] == 8 and batch.targets.shape[:2] == (8, 4)
    # data statistics, not ImageNet's: normalised pixels are roughly standardised
    assert 0.05 < dm.mean < 0.6 and dm.std > 0.05


def test_same_seed_same_batch(corpus_dir):
    batches = []
    for _ in range(2):
        dm = _dm(corpus_dir / "manifest.parquet")
        dm.setup("fit")
        batches.append(next(iter(dm.train_dataloader())))
    for key in ("image", "context", "targets"):
        assert torch.equal(getattr(batches[0], key), getattr(batches[1], key))


def test_missing_manifest_and_corrupt_frame_are_explained(corpus_dir, tmp_path):
    with pytest.raises(ManifestError, match="usjepa data synth"):
        _dm(tmp_path / "none.parquet").setup("fit")
    table = pd.read_parquet(corpus_dir / "manifest.parquet").head(4)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    table.loc[0, "frame_path"] = str(bad)
    table["frame_path"] = [str(bad)] + [str(corpus_dir / p) for p in table["frame_path"][1:]]
    table["scan_mask"] = ""
    table.to_csv(tmp_path / "m.csv", index=False)
    dm = _dm(tmp_path / "m.csv", mean=0.3, std=0.2)
    dm.setup("fit")
    ds = dm.train_set if 0 in dm.train_set.rows else dm.val_set
    idx = int(np.flatnonzero(ds.rows == 0)[0])
    with pytest.raises(ImageReadError, match="cannot be decoded"):
        ds.load(idx)
    # in training the frame is skipped for another and reported (tests/data/test_bad_data.py)
    sample = ds[idx]
    assert sample["bad_rows"] == [0] and sample["row"] != 0


def test_frames_without_masks_use_the_whole_frame(tmp_path):
    for i in range(4):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((40, 40), 60 * i, np.uint8))
    pd.DataFrame({"frame_path": [f"{i}.png" for i in range(4)]}).to_csv(tmp_path / "m.csv")
    dm = _dm(tmp_path / "m.csv", val_fraction=0.0, mean=0.5, std=0.25)
    dm.setup("fit")
    sample = dm.train_set[0]
    assert bool((sample["scan_cover"] == 1).all())


def test_crops_change_between_draws_of_the_same_frame(corpus_dir):
    dm = _dm(corpus_dir / "manifest.parquet", mean=0.3, std=0.2)
    dm.setup("fit")
    first, second = dm.train_set[0]["image"], dm.train_set[0]["image"]
    assert not torch.equal(first, second)  # a new crop each epoch, not one frozen crop


def test_batches_are_normalised_on_the_device_after_transfer(corpus_dir):
    dm = _dm(corpus_dir / "manifest.parquet", mean=0.3, std=0.2)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    raw = batch.image.clone()
    assert raw.dtype == torch.uint8  # a quarter of the bytes cross to the device
    out = dm.on_after_batch_transfer(batch, 0).image
    assert out.dtype == torch.float32
    assert torch.allclose(out, (raw.float() / 255 - 0.3) / 0.2, atol=1e-5)


def test_one_manifest_reader_behind_both_views(tmp_path):
    """read_manifest (pandas, data tools) and load_frame_table (columnar, training) read
    through one ManifestFile: the same rows, and the same message for a broken file."""
    from usjepa.data.frames import load_frame_table
    from usjepa.data.manifest import read_manifest

    rows = pd.DataFrame(
        {"frame_path": ["a.png", "b.png", "c.png"], "dataset": ["x", "y", "x"],
         "scan_mask": ["m.png", "", "m.png"]}
    )  # fmt: skip
    for suffix in (".parquet", ".csv"):
        path = tmp_path / f"manifest{suffix}"
        rows.to_parquet(path) if suffix == ".parquet" else rows.to_csv(path, index=False)
        frame, table = read_manifest(path), load_frame_table(path)
        assert list(frame["frame_path"]) == [table.frame_path[i] for i in range(3)]
        assert [table.scan_mask[i] for i in range(3)] == ["m.png", "", "m.png"]
        assert list(frame["scan_mask"].fillna("")) == ["m.png", "", "m.png"]
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not a parquet file")
    messages = set()
    for reader in (read_manifest, load_frame_table):
        with pytest.raises(ManifestError, match="cannot be read") as info:
            reader(broken)
        messages.add(str(info.value))
    assert len(messages) == 1


def test_persistent_workers_give_the_same_batches_every_epoch_as_fresh_workers(corpus_dir):
    def two_epochs(persistent):
        dm = _dm(corpus_dir / "manifest.parquet", num_workers=1, persistent_workers=persistent)
        dm.setup("fit")
        loader = dm.train_dataloader()
        assert loader.persistent_workers is persistent
        assert loader.pin_memory is torch.cuda.is_available()
        out = []
        for epoch in range(2):
            loader.sampler.set_epoch(epoch)
            out.append(next(iter(loader)))
        return out

    fresh, kept = two_epochs(False), two_epochs(True)
    assert not torch.equal(kept[0].image, kept[1].image)  # the epochs differ
    for a, b in zip(fresh, kept, strict=True):
        for key in ("image", "context", "targets"):
            assert torch.equal(getattr(a, key), getattr(b, key))
