"""``usjepa data build`` from raw layouts the tests write: images, mp4, NIfTI, DICOM."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.data.raw_sources import (
    write_dicom_cine,
    write_gif,
    write_mp4,
    write_nifti,
    write_raw_dataset,
)
from usjepa.data.images import read_gray
from usjepa.data.ingest import FramePolicy, build_dataset, iter_frames, source_kind
from usjepa.data.validate import validate_manifest


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    raw = tmp_path_factory.mktemp("raw")
    counts = write_raw_dataset(raw)
    out = tmp_path_factory.mktemp("corpus")
    policy = FramePolicy(video_fps=5.0, max_frames_per_clip=8, volume_stride=3)
    report = build_dataset(
        raw,
        out,
        "toy",
        organ="abdomen",
        size=64,
        policy=policy,
        patient_pattern=r"^images/([^/]+)/",
        workers=2,
        progress=False,
        pseudonymize=False,  # raw names kept: the pseudonymised build is tests/data/test_privacy.py
    )
    return raw, out, report, counts, policy


def test_build_writes_every_kind_and_counts_corrupt(built):
    raw, out, report, counts, _ = built
    assert report.sources == counts["sources"]
    assert report.failed == counts["corrupt"] and report.built == counts["sources"] - 2
    errors = pd.read_csv(out / "build_errors.csv")
    assert sorted(errors["source"]) == ["broken/bad.mp4", "broken/bad.png"]
    table = pd.read_parquet(out / "manifest.parquet")
    assert set(table["source_kind"]) == {"image", "video", "volume", "dicom"}
    assert (table["dataset"] == "toy").all() and (table["organ"] == "abdomen").all()
    assert validate_manifest(out / "manifest.parquet", progress=False) == []
    # short side resized to 64, grayscale
    frame = read_gray(out / table["frame_path"].iloc[0])
    assert min(frame.shape) == 64
    assert (np.minimum(table["width"], table["height"]) == 64).all()


def test_frame_policy_sampling(built):
    _, out, _, _, _ = built
    table = pd.read_parquet(out / "manifest.parquet")
    video = table[table["source_kind"] == "video"]["frame_index"].tolist()
    assert video == [0, 2, 4, 6, 8, 10, 12, 14][: len(video)] or len(video) == 8
    assert len(video) == 8  # 30 frames at 10 fps sampled at 5 fps = 15, capped at 8
    volume = table[table["source_kind"] == "volume"]["frame_index"].tolist()
    assert volume == [0, 3, 6, 9]
    dicom = table[table["source_kind"] == "dicom"]["frame_index"].tolist()
    assert dicom == [0, 2, 4, 6, 8]  # 10 fps cine at 5 fps


def test_patients_and_clip_masks(built):
    _, out, _, _, _ = built
    table = pd.read_parquet(out / "manifest.parquet")
    images = table[table["source_kind"] == "image"]
    assert sorted(images["patient_id"].unique()) == ["toy/patient0", "toy/patient1"]
    video = table[table["source_kind"] == "video"]
    assert video["scan_mask"].nunique() == 1  # one mask per clip (temporal variance)
    assert images["scan_mask"].nunique() == len(images)  # one per frame
    mask = read_gray(out / video["scan_mask"].iloc[0]) > 127
    assert 0.2 < mask.mean() < 0.95


def test_rerun_skips_finished_sources(built):
    raw, out, report, _, policy = built
    before = pd.read_parquet(out / "manifest.parquet")
    again = build_dataset(
        raw, out, "toy", size=64, policy=policy, progress=False, pseudonymize=False
    )
    assert again.skipped == report.built and again.built == 0 and again.failed == 2
    after = pd.read_parquet(out / "manifest.parquet")
    pd.testing.assert_frame_equal(before, after)


def test_readers_directly(tmp_path):
    policy = FramePolicy(video_fps=100.0, max_frames_per_clip=100, volume_stride=1)
    mp4 = write_mp4(tmp_path / "a.mp4", n=6)
    assert source_kind(mp4) == "video"
    assert len(list(iter_frames(mp4, "video", policy))) == 6
    gif = write_gif(tmp_path / "clip.GIF", n=6)  # an animated GIF is a clip, at its own rate
    assert source_kind(gif) == "video"
    frames = list(iter_frames(gif, "video", policy))
    assert [i for i, _ in frames] == list(range(6)) and frames[0][1].shape == (96, 96)
    assert [i for i, _ in iter_frames(gif, "video", FramePolicy(video_fps=5.0))] == [0, 2, 4]
    nii = write_nifti(tmp_path / "v.nii.gz", depth=5)
    frames = list(iter_frames(nii, "volume", policy))
    assert len(frames) == 5 and frames[0][1].dtype == np.uint8
    side = list(iter_frames(nii, "volume", FramePolicy(volume_axis=2, volume_stride=40)))
    assert side[0][1].shape == (5, 96)  # z by y, pixels already square
    dcm = write_dicom_cine(tmp_path / "noext", n=4)
    assert source_kind(dcm) == "dicom"  # found by its DICM magic, no extension
    assert [i for i, _ in iter_frames(dcm, "dicom", policy)] == [0, 1, 2, 3]


def test_build_rejects_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="raw folder"):
        build_dataset(tmp_path / "nope", tmp_path, "x", pseudonymize=False)
    with pytest.raises(ValueError, match="image_format"):
        build_dataset(tmp_path, tmp_path, "x", image_format="gif", pseudonymize=False)
