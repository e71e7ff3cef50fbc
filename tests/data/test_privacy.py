"""Patient privacy end to end: a hospital export with the patient's name burned into the
screen's header and written in its folder and file names, through build, shard, pretrain
and probe. No artefact may hold the name, the ID or the header's pixels."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import ROOT, run_cli
from tests.data.raw_sources import write_dicom_cine
from usjepa.cli import main
from usjepa.data.privacy import PrivacyError, Pseudonyms, load_secret
from usjepa.data.synthetic import draw_patient, render_frame
from usjepa.data.synthetic.screens import compose_screen

NAME, PATIENT_ID = "SMITH^JOHN", "1234567"
FOLDER = "SMITH_JOHN_1234567"  # a folder named after the patient, as exports are
NEEDLES = [b"SMITH", b"smith", b"Smith", b"JOHN", PATIENT_ID.encode()]


def _screens(n: int, seed: int, size: int = 96) -> tuple[list[np.ndarray], np.ndarray]:
    """``n`` grey screens (cart layout) of one clip with the name and ID in the header;
    and the header's pixels."""
    rng = np.random.default_rng(seed)
    patient = draw_patient(size, rng, "convex")
    out, header = [], None
    for t in range(n):
        scan, region = render_frame(patient, 0, np.random.default_rng([seed, t]))
        screen = compose_screen(
            scan, region, "cart", np.random.default_rng(seed), NAME, PATIENT_ID, scale=0.5
        )
        out.append(cv2.cvtColor(screen.image, cv2.COLOR_BGR2GRAY))
        header = screen.header
    assert header is not None
    return out, header


def _export(raw: Path) -> np.ndarray:
    """The hospital's export: stills, a cine as mp4 and one as DICOM, all screens."""
    folder = raw / FOLDER
    folder.mkdir(parents=True)
    header = None
    for k in range(3):
        frames, header = _screens(1, seed=k)
        cv2.imwrite(str(folder / f"{FOLDER}_still{k}.png"), frames[0])
    frames, header = _screens(6, seed=10)
    h, w = frames[0].shape
    writer = cv2.VideoWriter(
        str(folder / f"{FOLDER}_cine.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 5, (w, h)
    )
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_GRAY2BGR))
    writer.release()
    frames, header = _screens(5, seed=20)
    write_dicom_cine(
        folder / "IM_0001.dcm",
        frames=np.stack(frames),
        tags={"PatientName": NAME, "PatientID": PATIENT_ID, "InstitutionName": "St Smith"},
    )
    return header


def _task_source(src: Path) -> None:
    """Two classes; each patient's screens in a folder named after them."""
    for c, label in enumerate(("normal", "lesion")):
        for p in range(4):
            folder = src / label / f"{FOLDER}_{c}{p}"
            folder.mkdir(parents=True)
            for k in range(2):
                frames, _ = _screens(1, seed=100 * c + 10 * p + k)
                cv2.imwrite(str(folder / f"{FOLDER}_{k}.png"), frames[0])


def _leaks(root: Path) -> list[str]:
    """Files under ``root`` whose name or bytes hold the name or the ID."""
    found = []
    for path in root.rglob("*"):
        if any(n.decode() in path.name for n in NEEDLES):
            found.append(f"name: {path}")
        if path.is_file():
            data = path.read_bytes()
            if path.suffix == ".parquet":  # compressed: read the values
                data = pd.read_parquet(path).to_csv().encode()
            if any(n in data for n in NEEDLES):
                found.append(f"content: {path}")
    return found


@pytest.mark.slow
def test_a_hospital_export_leaves_no_identity_in_any_artefact(tmp_path, capsys):
    raw = tmp_path / "hospital" / "raw"
    header = _export(raw)
    out, shards = tmp_path / "corpus", tmp_path / "shards"
    main(["data", "build", str(raw), str(out), "--dataset", "hospital", "--no-catalog",
          "--patient-pattern", "^([^/]+)/"])  # fmt: skip
    secret = raw.parent / ".usjepa-secret"
    assert secret.is_file() and not list(out.rglob(".usjepa-secret"))
    manifest = pd.read_parquet(out / "manifest.parquet")
    assert set(manifest["source_kind"]) == {"image", "video", "dicom"}
    assert manifest["patient_id"].nunique() == 1  # one patient, under a pseudonym
    assert manifest["patient_id"].iloc[0].startswith("hospital/p-")
    # every written frame: the header's pixels are black
    for rel in manifest["frame_path"]:
        frame = cv2.imread(str(out / rel), cv2.IMREAD_GRAYSCALE)
        band = cv2.resize(header, frame.shape[::-1], interpolation=cv2.INTER_NEAREST) > 0
        assert frame[band].max() == 0, rel
    # one patient: held out for validation by a 5 % share in 1 run of 20 (its pseudonym's
    # key is new each run), so it is kept for training, shards and files alike
    main(["data", "shard", str(out / "manifest.parquet"), str(shards), "--val-fraction", "0"])

    # pretrain a few steps from the shards, with mask images in TensorBoard
    runs = tmp_path / "runs"
    config = yaml.safe_load((ROOT / "experiments/demo/teacher_mae.yaml").read_text())
    trainer = config["trainer"]
    trainer.update(max_steps=3, enable_progress_bar=False, default_root_dir=str(runs / "teacher"))
    trainer["logger"]["init_args"]["save_dir"] = str(runs)
    for callback in trainer["callbacks"]:
        if callback["class_path"].endswith("MaskImages"):
            callback["init_args"] = {"every_n_steps": 1}
    data = config["data"]["init_args"]
    data.update(manifest=str(out / "manifest.parquet"), shards=str(shards), val_fraction=0.0,
                synthesize_if_missing=False, batch_size=4, num_workers=0)  # fmt: skip
    (tmp_path / "pretrain.yaml").write_text(yaml.safe_dump(config))
    log = run_cli(["pretrain", "--config", str(tmp_path / "pretrain.yaml")], tmp_path)
    assert (runs / "teacher" / "encoder.md").is_file()  # the model card
    events = list(runs.rglob("events.out.tfevents*"))
    assert events and _tensorboard_images(events)  # mask images were logged

    # a task of one's own from the same kind of export, and a probe of the encoder
    _task_source(tmp_path / "hospital" / "labelled")
    task = tmp_path / "task"
    main(["data", "make-task", str(tmp_path / "hospital" / "labelled"), str(task)])
    records = json.loads((task / "train_val.json").read_text())
    assert len({r["patient"] for r in records}) > 1  # grouping survives the pseudonyms
    probe = yaml.safe_load((ROOT / "experiments/probe/demo.yaml").read_text())
    probe["task"]["init_args"] = {"root": str(task), "img_size": 64}
    encoder = probe["encoders"]["teacher_mae"]
    encoder["init_args"]["checkpoint"] = str(runs / "teacher" / "encoder.safetensors")
    probe["encoders"] = {"teacher_mae": encoder}
    probe["protocol"].update(seeds=[0], epochs=2, lrs=[1e-2], weight_decays=[1e-4])
    probe["out_dir"] = str(tmp_path / "probe")
    (tmp_path / "probe.yaml").write_text(yaml.safe_dump(probe))
    probed = run_cli(["probe", "--config", str(tmp_path / "probe.yaml")], tmp_path)

    # nothing anywhere holds the name or the ID: files, file names, logs, printed output
    for root in (out, shards, runs, task, tmp_path / "probe"):
        assert not _leaks(root), _leaks(root)
    printed = log.stdout + log.stderr + probed.stdout + probed.stderr + capsys.readouterr().out
    assert not any(n.decode() in printed for n in NEEDLES)
    # (the logged mask images are drawn from the shards' frames, checked above through
    # the frames they were written from)


def _tensorboard_images(events: list[Path]) -> list[np.ndarray]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    images = []
    for path in events:
        acc = EventAccumulator(str(path), size_guidance={"images": 0})
        acc.Reload()
        for tag in acc.Tags().get("images", []):
            for event in acc.Images(tag):
                data = np.frombuffer(event.encoded_image_string, np.uint8)
                images.append(cv2.imdecode(data, cv2.IMREAD_COLOR))
    return images


def test_pseudonyms_are_stable_keyed_and_the_secret_stays_out_of_the_corpus(tmp_path):
    key = load_secret(tmp_path / "raw" / ".usjepa-secret", tmp_path / "corpus")
    again = load_secret(tmp_path / "raw" / ".usjepa-secret", tmp_path / "corpus")
    assert key == again and len(key) == 32  # made once, then read: rebuilds agree
    assert (tmp_path / "raw" / ".usjepa-secret").stat().st_mode & 0o077 == 0
    names, other = Pseudonyms(key), Pseudonyms(b"\x01" * 32)
    assert names.patient("ds", "SMITH") == names.patient("ds", "SMITH")
    assert names.patient("ds", "SMITH") != names.patient("ds", "JONES")
    assert names.patient("ds", "SMITH") != other.patient("ds", "SMITH")  # keyed
    assert "SMITH" not in names.source("ds", "SMITH/scan.mp4")
    assert names.source("ds", "SMITH/scan.MP4").endswith(".mp4")
    with pytest.raises(PrivacyError, match="inside the corpus"):
        load_secret(tmp_path / "corpus" / ".usjepa-secret", tmp_path / "corpus")
    names.record(tmp_path / "corpus")
    with pytest.raises(PrivacyError, match="another secret"):
        other.record(tmp_path / "corpus")
    (tmp_path / "bad").write_text("not hex")
    with pytest.raises(PrivacyError, match="restore"):
        load_secret(tmp_path / "bad")


def test_rebuild_gives_the_same_pseudonyms_and_named_builds_do_not_mix(tmp_path):
    from usjepa.data.ingest import build_dataset

    raw = tmp_path / "site" / "raw"
    _export(raw)
    first = build_dataset(raw, tmp_path / "a", "ds", progress=False)
    second = build_dataset(raw, tmp_path / "b", "ds", progress=False)
    a = pd.read_parquet(first.manifest).sort_values("frame_path").reset_index(drop=True)
    b = pd.read_parquet(second.manifest).sort_values("frame_path").reset_index(drop=True)
    pd.testing.assert_frame_equal(a[["frame_path", "patient_id", "source_path"]],
                                  b[["frame_path", "patient_id", "source_path"]])  # fmt: skip
    with pytest.raises(PrivacyError, match="pseudonymised datasets"):
        build_dataset(raw, tmp_path / "a", "named", size=64, progress=False, pseudonymize=False)
    build_dataset(raw, tmp_path / "c", "named", size=64, progress=False, pseudonymize=False)
    with pytest.raises(PrivacyError, match="raw names"):
        build_dataset(raw, tmp_path / "c", "ds", size=64, progress=False)
    kept = build_dataset(raw, tmp_path / "d", "ds", progress=False, blank_outside=False)
    frame = pd.read_parquet(kept.manifest)["frame_path"].iloc[0]
    assert cv2.imread(str(tmp_path / "d" / frame), cv2.IMREAD_GRAYSCALE)[:4].max() > 0
