"""Every user error a command can hit ends in one line: what, where, the fix.

The commands run in process (``usjepa.cli.main``). Each case asserts exit status 1, no
traceback, and that the last line of stderr names the thing and says what to do.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import tiny_encoder
from usjepa.cli import main
from usjepa.models import export_encoder

ROOT = Path(__file__).resolve().parents[1]
SALT = str(ROOT / "experiments/demo/salt.yaml")
MAE = str(ROOT / "experiments/demo/teacher_mae.yaml")


def fail(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run a command that must fail; its last stderr line, lower-cased."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 1, err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"usjepa {argv[0]}: error: "), last
    return last.lower()


def tiny_salt(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "pretrain", "--config", SALT,
        "--trainer.max_steps", "1",
        "--trainer.default_root_dir", str(tmp_path / "run"),
        "--trainer.logger", "false",
        "--trainer.callbacks", "[]",
        "--trainer.enable_progress_bar", "false",
        "--data.init_args.manifest", str(tmp_path / "corpus/manifest.parquet"),
        "--data.init_args.synthetic_images", "16",
        "--data.init_args.num_workers", "0",
        "--data.init_args.batch_size", "8",
        *extra,
    ]  # fmt: skip


@pytest.fixture()
def teacher(tmp_path: Path) -> Path:
    enc = tiny_encoder(img_size=64, patch_size=8, embed_dim=192, depth=6, num_heads=3)
    return export_encoder(enc, tmp_path / "teacher.safetensors")


# --- pretrain ------------------------------------------------------------------------


def test_teacher_checkpoint_missing(tmp_path, capsys):
    last = fail(
        tiny_salt(tmp_path, "--model.init_args.teacher.init_args.checkpoint", "/no/t.st"), capsys
    )
    assert "/no/t.st" in last and "not found" in last and "make pretrain" in last


def test_teacher_checkpoint_of_another_width(tmp_path, capsys):
    other = export_encoder(tiny_encoder(img_size=64, embed_dim=96), tmp_path / "w96.safetensors")
    last = fail(
        tiny_salt(tmp_path, "--model.init_args.teacher.init_args.checkpoint", str(other)), capsys
    )
    assert "w96.safetensors" in last and "does not match" in last and "size arguments" in last


def test_truncated_checkpoint(tmp_path, capsys, teacher):
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(teacher.read_bytes()[:1000])
    last = fail(
        tiny_salt(tmp_path, "--model.init_args.teacher.init_args.checkpoint", str(cut)), capsys
    )
    assert "cut.safetensors" in last and "truncated" in last


def test_image_size_not_a_multiple_of_the_patch(tmp_path, capsys):
    last = fail(tiny_salt(tmp_path, "--model.init_args.student.init_args.img_size", "60"), capsys)
    assert "img_size 60" in last and "patch_size 8" in last and "multiple" in last


def test_manifest_missing(tmp_path, capsys, teacher):
    last = fail(
        tiny_salt(
            tmp_path,
            "--model.init_args.teacher.init_args.checkpoint", str(teacher),
            "--data.init_args.synthesize_if_missing", "false",
        ),
        capsys,
    )  # fmt: skip
    assert "manifest.parquet" in last and "not found" in last and "usjepa data" in last


def test_manifest_with_wrong_columns(tmp_path, capsys, teacher):
    (tmp_path / "corpus").mkdir()
    pd.DataFrame({"path": ["a.png"], "label": [0]}).to_parquet(tmp_path / "corpus/manifest.parquet")
    last = fail(
        tiny_salt(tmp_path, "--model.init_args.teacher.init_args.checkpoint", str(teacher)), capsys
    )
    assert "manifest.parquet" in last and "frame_path" in last


def test_empty_manifest(tmp_path, capsys, teacher):
    (tmp_path / "corpus").mkdir()
    cols = ["frame_path", "dataset", "organ", "source_kind", "source_path", "frame_index",
            "patient_id", "split", "width", "height", "scan_mask"]  # fmt: skip
    pd.DataFrame({c: pd.Series([], dtype=str) for c in cols}).to_parquet(
        tmp_path / "corpus/manifest.parquet"
    )
    last = fail(
        tiny_salt(tmp_path, "--model.init_args.teacher.init_args.checkpoint", str(teacher)), capsys
    )
    assert "manifest.parquet" in last and "no frames" in last


def test_config_key_typo_names_the_nearest_key(tmp_path, capsys):
    last = fail(tiny_salt(tmp_path, "--model.init_args.weight_decy", "0.1"), capsys)
    assert "weight_decy" in last and "did you mean 'weight_decay'" in last


def test_trainer_flag_typo_names_the_nearest_flag(tmp_path, capsys):
    last = fail(tiny_salt(tmp_path, "--trainer.max_stpes", "3"), capsys)
    assert "trainer.max_stpes" in last and "did you mean 'max_steps'" in last


def test_config_file_missing(tmp_path, capsys):
    last = fail(["pretrain", "--config", str(tmp_path / "nope.yaml")], capsys)
    assert "nope.yaml" in last


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(Exception, match="not found"):
        main(
            [
                *tiny_salt(tmp_path, "--model.init_args.teacher.init_args.checkpoint", "/no/t.st"),
                "--debug",
            ]
        )


def test_test_images_in_the_corpus_are_refused(tmp_path, capsys, teacher, task_dir):
    from usjepa.data.synthetic import generate_corpus

    corpus = tmp_path / "corpus"
    generate_corpus(corpus, n_images=16, size=64, frames_per_patient=4, progress=False)
    table = pd.read_parquet(corpus / "manifest.parquet")
    test_image = json.loads((task_dir / "test.json").read_text())[0]["image"]
    table.loc[0, "frame_path"] = str(task_dir / test_image)
    table.to_parquet(corpus / "manifest.parquet")
    last = fail(
        tiny_salt(
            tmp_path,
            "--model.init_args.teacher.init_args.checkpoint", str(teacher),
            "--data.init_args.test_index", json.dumps([str(task_dir)]),
        ),
        capsys,
    )  # fmt: skip
    assert "test image" in last and "check-leakage" in last


def test_full_disk_while_checkpointing_keeps_the_checkpoints_written(tmp_path, capsys, monkeypatch):
    import errno

    import torch
    from lightning.fabric.plugins.io import torch_io

    real, calls = torch_io._atomic_save, []

    def save_until_full(checkpoint, path):
        calls.append(path)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(checkpoint, path)

    monkeypatch.setattr(torch_io, "_atomic_save", save_until_full)
    every_step = json.dumps(
        [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
          "init_args": {"every_n_train_steps": 1, "save_top_k": -1}}]
    )  # fmt: skip
    args = tiny_salt(tmp_path)
    args[2] = MAE
    args[args.index("--trainer.callbacks") + 1] = every_step
    last = fail([*args, "--trainer.max_steps", "3"], capsys)
    assert "no space left" in last and "step=2" in last and "last.ckpt" in last
    kept = sorted((tmp_path / "run").rglob("*.ckpt"))
    assert [p.name for p in kept] == ["epoch=0-step=1.ckpt"]
    assert torch.load(kept[0], weights_only=False)["global_step"] == 1


# --- probe ---------------------------------------------------------------------------


def probe_args(tmp_path: Path, task_root: str, encoders: dict) -> list[str]:
    task = {
        "class_path": "usjepa.data.ProbeDataModule",
        "init_args": {"root": task_root, "img_size": 32, "synthesize_if_missing": False},
    }
    return [
        "probe", "--config", str(ROOT / "experiments/probe/demo.yaml"),
        "--task", json.dumps(task), "--encoders", json.dumps(encoders),
        "--protocol.seeds", "[0]", "--out_dir", str(tmp_path / "probe"),
    ]  # fmt: skip


def _export_spec(path: Path) -> dict:
    return {
        "class_path": "usjepa.models.zoo.ZooEncoder",
        "init_args": {"name": "usjepa", "checkpoint": str(path)},
    }


def test_task_folder_missing(tmp_path, capsys, teacher):
    last = fail(
        probe_args(tmp_path, str(tmp_path / "no_task"), {"t": _export_spec(teacher)}), capsys
    )
    assert "no_task" in last and "build-task" in last


def test_unknown_zoo_name(tmp_path, capsys, task_dir):
    enc = {"x": {"class_path": "usjepa.models.zoo.ZooEncoder", "init_args": {"name": "usf_mea"}}}
    last = fail(probe_args(tmp_path, str(task_dir), enc), capsys)
    assert "usf_mea" in last and "usf_mae" in last


def test_label_outside_the_classes(tmp_path, capsys, task_dir, teacher):
    import shutil

    task = tmp_path / "task"
    shutil.copytree(task_dir, task)
    records = json.loads((task / "train_val.json").read_text())
    records[3]["label"] = 17
    (task / "train_val.json").write_text(json.dumps(records))
    last = fail(probe_args(tmp_path, str(task), {"t": _export_spec(teacher)}), capsys)
    assert "train_val.json" in last and "17" in last and "classes.json" in last


def test_exports_in_one_folder_keep_their_own_names(tmp_path):
    from usjepa.eval.runner import resolve_models

    a = export_encoder(tiny_encoder(), tmp_path / "exports/student.safetensors")
    b = export_encoder(tiny_encoder(1), tmp_path / "exports/teacher.safetensors")
    c = export_encoder(tiny_encoder(2), tmp_path / "runs/salt/encoder.safetensors")
    assert list(resolve_models({}, [str(a), str(b), str(c)])) == ["student", "teacher", "salt"]


def test_two_models_with_one_name_are_refused(tmp_path, capsys, task_dir):
    a = export_encoder(tiny_encoder(), tmp_path / "x/enc/encoder.safetensors")
    b = export_encoder(tiny_encoder(1), tmp_path / "y/enc/encoder.safetensors")
    args = [*probe_args(tmp_path, str(task_dir), {}), "--models", json.dumps([str(a), str(b)])]
    last = fail(args, capsys)
    assert "both be named 'enc'" in last and "distinct" in last


# --- data tools ----------------------------------------------------------------------


def test_patient_in_two_splits(tmp_path, capsys):
    import cv2
    import numpy as np

    for i in range(4):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((32, 32), 40 * i, np.uint8))
    pd.DataFrame(
        {"image": [f"{i}.png" for i in range(4)], "label": ["a", "b", "a", "b"],
         "patient": ["p1", "p1", "p2", "p3"], "split": ["train_val", "test", "train_val", "test"]}
    ).to_csv(tmp_path / "labels.csv", index=False)  # fmt: skip
    last = fail(
        [
            "data",
            "make-task",
            str(tmp_path),
            str(tmp_path / "out"),
            "--labels",
            str(tmp_path / "labels.csv"),
        ],
        capsys,
    )
    assert "p1" in last and "both splits" in last


def test_validate_names_a_bad_manifest(tmp_path, capsys):
    last = fail(["data", "validate", str(tmp_path / "none.parquet")], capsys)
    assert "none.parquet" in last


def test_build_with_an_unknown_dataset(tmp_path, capsys):
    (tmp_path / "raw").mkdir()
    last = fail(
        ["data", "build", str(tmp_path / "raw"), str(tmp_path / "out"), "--dataset", "BUSII"],
        capsys,
    )
    assert "busii" in last and "--no-catalog" in last


def test_build_with_a_pixel_aspect_that_is_no_pixel_shape(tmp_path, capsys):
    (tmp_path / "raw").mkdir()
    argv = ["data", "build", str(tmp_path / "raw"), str(tmp_path / "out"), "--dataset", "x"]
    last = fail([*argv, "--no-catalog", "--pixel-aspect", "0"], capsys)
    assert "pixel_aspect 0.0" in last and "1.33 for 4:3 scans stored square" in last


def test_make_task_with_a_pixel_aspect_that_is_no_pixel_shape(tmp_path, capsys):
    (tmp_path / "src").mkdir()
    argv = ["data", "make-task", str(tmp_path / "src"), str(tmp_path / "out")]
    last = fail([*argv, "--pixel-aspect", "20"], capsys)
    assert "pixel_aspect 20.0" in last and "1.33 for 4:3 scans stored square" in last


def test_data_tool_slips_end_in_one_line(tmp_path, capsys):
    """The data tools share the jsonargparse stack: a missing option or an unknown tool
    is one line, not a usage page."""
    last = fail(["data", "build", str(tmp_path / "raw"), str(tmp_path / "out")], capsys)
    assert "required" in last and "dataset" in last and "--help" in last
    last = fail(["data", "frobnicate"], capsys)
    assert "frobnicate" in last and "validate" in last


def test_probe_option_from_before_the_protocol_names_its_new_home(tmp_path, capsys):
    config = tmp_path / "probe.yaml"
    config.write_text((ROOT / "experiments/probe/demo.yaml").read_text())
    last = fail(["probe", "--config", str(config), "--seeds", "[0]"], capsys)
    assert "--seeds" in last and "protocol.seeds" in last


def test_data_tools_read_their_options_from_yaml(tmp_path, capsys):
    from usjepa.data.synthetic import generate_corpus

    manifest = generate_corpus(tmp_path / "corpus", 6, size=32, progress=False)
    (tmp_path / "validate.yaml").write_text(f"manifest: {manifest}\nno_files: true\n")
    main(["data", "validate", "--config", str(tmp_path / "validate.yaml")])
    assert "no problems" in capsys.readouterr().out.lower()
