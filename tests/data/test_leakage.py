"""Perceptual hashes find test images in a corpus; pretraining refuses such a corpus."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pandas as pd
import pytest

from usjepa.cli import main
from usjepa.data import CorpusDataModule
from usjepa.data.leakage import (
    LeakageError,
    find_matches,
    hamming,
    phash,
    thumb_correlation,
    thumbnail,
)
from usjepa.masks import MultiBlockMaskGenerator


def test_phash_survives_resize_and_jpeg_but_separates_frames(task_dir):
    a = cv2.imread(str(task_dir / "images" / "0000_00.png"), 0)
    other = cv2.imread(str(task_dir / "images" / "0000_01.png"), 0)  # same patient, next frame
    small = cv2.resize(a, (48, 48), interpolation=cv2.INTER_AREA)
    ok, enc = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 70])
    b = cv2.imdecode(enc, 0)
    h = np.array([phash(a), phash(b), phash(other)])
    assert hamming(h[0], h[1]) <= 6
    assert thumb_correlation(thumbnail(a), thumbnail(b)) >= 0.98
    assert thumb_correlation(thumbnail(a), thumbnail(other)) < 0.98


def test_banded_search_equals_brute_force():
    rng = np.random.default_rng(0)
    index = rng.integers(-(2**63), 2**63 - 1, 200, dtype=np.int64)
    flips = rng.integers(0, 64, (1000, 3))
    corpus = index[rng.integers(0, 200, 1000)].copy()
    for i, bits in enumerate(flips):  # 0 to 3 flipped bits
        for b in bits[: i % 4]:
            corpus[i] ^= np.int64(1) << np.int64(b) if b < 63 else np.int64(-(2**63))
    corpus = np.concatenate([corpus, rng.integers(-(2**63), 2**63 - 1, 1000, dtype=np.int64)])
    found = find_matches(corpus, index, 3)
    brute = np.argwhere(hamming(corpus[:, None], index[None]) <= 3)
    assert sorted(map(tuple, brute)) == sorted(zip(found["row"], found["index_row"]))


def _leaky_corpus(corpus_dir, task_dir, tmp_path):
    root = tmp_path / "leaky"
    shutil.copytree(corpus_dir, root)
    table = pd.read_parquet(root / "manifest.parquet")
    test = pd.read_json(task_dir / "test.json")
    for k, rec in enumerate(test.head(3).itertuples()):  # re-encoded at another size
        image = cv2.resize(cv2.imread(str(task_dir / rec.image), 0), (72, 72))
        cv2.imwrite(str(root / f"leak{k}.jpg"), image)
    extra = pd.DataFrame(
        {
            "frame_path": [f"leak{k}.jpg" for k in range(3)],
            "patient_id": ["leak"] * 3,
            "scan_mask": [""] * 3,
        }
    )
    pd.concat([table, extra], ignore_index=True).drop(
        columns=["phash"], errors="ignore"
    ).to_parquet(root / "manifest.parquet")
    return root


def test_check_leakage_cli_filters_and_training_refuses(corpus_dir, task_dir, tmp_path, capsys):
    root = _leaky_corpus(corpus_dir, task_dir, tmp_path)
    manifest = root / "manifest.parquet"
    with pytest.raises(SystemExit):  # matches and no --out: non-zero exit
        main(["data", "check-leakage", str(manifest), str(task_dir)])
    assert "3 of" in capsys.readouterr().out  # no false positive among 48 frames
    main(
        [
            "data",
            "check-leakage",
            str(manifest),
            str(task_dir),
            "--out",
            str(root / "clean.parquet"),
            "--report",
            str(tmp_path / "leaks.csv"),
        ]
    )
    assert len(pd.read_csv(tmp_path / "leaks.csv")) >= 3
    kept = len(pd.read_parquet(manifest)) - 3
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert f"clean.parquet: {kept} frames, without them; its frame paths are relative" in last
    assert "--data.init_args.root" not in last  # written beside the frames: nothing to add
    assert len(pd.read_parquet(root / "clean.parquet")) == len(pd.read_parquet(manifest)) - 3

    def dm(path, allow=False):
        return CorpusDataModule(
            str(path),
            MultiBlockMaskGenerator(4),
            img_size=32,
            test_index=[str(task_dir)],
            allow_test_leakage=allow,
            mean=0.3,
            std=0.2,
        )

    with pytest.raises(LeakageError, match="allow_test_leakage"):
        dm(manifest).setup("fit")
    allowed = dm(manifest, allow=True)
    allowed.setup("fit")
    assert allowed.leaks is not None and allowed.leaks["row"].nunique() == 3
    dm(root / "clean.parquet").setup("fit")  # the filtered corpus trains
