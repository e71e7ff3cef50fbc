"""Columnar manifests, litdata shards split across ranks and workers, sampling weights."""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
import pytest
from litdata import StreamingDataLoader
from litdata.utilities.env import _DistributedEnv

from usjepa.cli import main
from usjepa.data import CorpusDataModule
from usjepa.data.batches import FrameTransform
from usjepa.data.frames import load_frame_table, sampling_weights
from usjepa.data.shards import ShardCorpusDataset, pack_mask, shard_datasets, unpack_mask
from usjepa.masks import MultiBlockMaskGenerator


def test_frame_table_matches_pandas(corpus_dir):
    table = load_frame_table(corpus_dir / "manifest.parquet")
    frame = pd.read_parquet(corpus_dir / "manifest.parquet")
    assert [table.frame_path[i] for i in range(len(table))] == frame["frame_path"].tolist()
    assert [table.scan_mask[i] for i in range(len(table))] == frame["scan_mask"].tolist()
    assert [table.patient[i] for i in range(len(table))] == frame["patient_id"].astype(str).tolist()
    assert table.frame_path.data.dtype == np.uint8  # one buffer, no per-row objects


def test_sampling_weights():
    codes = np.array([0] * 90 + [1] * 10)
    assert sampling_weights(codes, "size") is None
    uniform = sampling_weights(codes, "uniform")
    assert np.isclose(uniform[codes == 0].sum(), 0.5) and np.isclose(uniform.sum(), 1)
    temp = sampling_weights(codes, "temperature", 2.0)
    share = temp[codes == 1].sum()
    assert np.isclose(share, 10**0.5 / (10**0.5 + 90**0.5))
    with pytest.raises(ValueError, match="sampling mode"):
        sampling_weights(codes, "bogus")


def test_mask_packing_round_trip():
    mask = (np.random.default_rng(0).random((37, 53)) > 0.5).astype(np.uint8) * 255
    assert (unpack_mask(pack_mask(mask)) == mask).all()


@pytest.fixture(scope="module")
def shards(corpus_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    main(
        [
            "data",
            "shard",
            str(corpus_dir / "manifest.parquet"),
            str(out),
            "--chunk-bytes",
            "40KB",
            "--val-fraction",
            "0.25",
        ]
    )
    return out


def _pixel_sum(image, mask) -> int:
    return int(image.sum())  # identifies a frame


def test_shards_split_across_ranks_and_workers(shards, corpus_dir):
    name = next(p.name for p in shards.iterdir() if p.is_dir())
    seen = []
    for rank in range(2):
        ds = ShardCorpusDataset(str(shards / name), _pixel_sum, shuffle=True, seed=1)
        ds.distributed_env = _DistributedEnv(world_size=2, global_rank=rank, num_nodes=1)
        loader = StreamingDataLoader(ds, batch_size=1, num_workers=2)
        seen.append([int(x) for x in loader])
    total = len(ShardCorpusDataset(str(shards / name), _pixel_sum))
    table = load_frame_table(corpus_dir / "manifest.parquet")
    assert total == int((~table.val_rows(0.25)).sum())
    assert abs(len(seen[0]) - len(seen[1])) <= 2 and len(seen[0]) + len(seen[1]) >= total - 2
    # ranks read different frames (pixel sums identify frames)
    assert len(set(seen[0]) & set(seen[1])) <= 1


def test_datamodule_trains_from_shards(shards, corpus_dir):
    dm = CorpusDataModule(
        str(corpus_dir / "manifest.parquet"),
        MultiBlockMaskGenerator(4),
        shards=str(shards),
        img_size=32,
        batch_size=4,
        sampling="uniform",
        val_fraction=0.25,
        mean=0.3,
        std=0.2,
    )
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch.image.shape == (4, 1, 32, 32) and batch.context.shape[0] == 4
    files = next(iter(dm.val_dataloader()))
    assert files.image.shape[1:] == (1, 32, 32)


def test_transform_is_shared_by_files_and_shards():
    t = FrameTransform(16, None)
    image = np.arange(64 * 64, dtype=np.uint8).reshape(64, 64)
    out = t(image, np.full_like(image, 255))
    assert out["image"].shape == (1, 16, 16) and bool(out["scan_mask"].all())


def test_shard_names_the_root_a_moved_manifest_needs(corpus_dir, tmp_path, capsys):
    """A manifest written outside its corpus folder (as check-leakage --out can) holds
    paths relative to that folder: sharding it says to give --root, then works with it."""
    import shutil

    moved = tmp_path / "elsewhere" / "manifest.parquet"
    moved.parent.mkdir()
    shutil.copy(corpus_dir / "manifest.parquet", moved)
    with pytest.raises(SystemExit):
        main(["data", "shard", str(moved), str(tmp_path / "shards")])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "give that folder with --root" in last and str(moved) in last
    main(["data", "shard", str(moved), str(tmp_path / "shards"), "--root", str(corpus_dir)])
    assert shard_datasets(tmp_path / "shards")


def _one_patient_held_out(corpus_dir, tmp_path):
    """The corpus's manifest with every frame given to one patient whose hash falls in
    the default 5 % validation share (a hospital export of one patient, say)."""
    name = next(f"p{i}" for i in range(10_000) if zlib.crc32(f"p{i}".encode()) % 10_000 < 500)
    frame = pd.read_parquet(corpus_dir / "manifest.parquet").assign(patient_id=name)
    manifest = tmp_path / "one_patient.parquet"
    frame.to_parquet(manifest)
    return manifest


def test_shards_of_a_corpus_whose_every_patient_is_held_out(corpus_dir, tmp_path, capsys):
    manifest = _one_patient_held_out(corpus_dir, tmp_path)
    argv = ["data", "shard", str(manifest), str(tmp_path / "shards"), "--root", str(corpus_dir)]
    with pytest.raises(SystemExit):
        main(argv)
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "all its 1 patient(s) fall in the validation share" in last
    assert "--val-fraction 0" in last
    main([*argv, "--val-fraction", "0"])  # the fix it names: every frame sharded
    frames = len(pd.read_parquet(manifest))
    assert sum(shard_datasets(tmp_path / "shards").values()) == frames


def test_pretraining_on_a_corpus_whose_every_patient_is_held_out(corpus_dir, tmp_path):
    manifest = _one_patient_held_out(corpus_dir, tmp_path)
    generator = MultiBlockMaskGenerator(grid_size=4)
    data = CorpusDataModule(str(manifest), generator, root=str(corpus_dir), img_size=32)
    with pytest.raises(ValueError, match=r"validation share.*data.init_args.val_fraction: 0"):
        data.setup("fit")
    data = CorpusDataModule(
        str(manifest), generator, root=str(corpus_dir), img_size=32, val_fraction=0.0
    )
    data.setup("fit")
    assert len(data.train_set) == len(pd.read_parquet(manifest)) and len(data.val_set) == 0
