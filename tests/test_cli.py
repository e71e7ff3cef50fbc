"""The demo pipeline through the real CLI, on tiny settings, in a scratch folder."""

import os
import subprocess
import sys

import pandas as pd
import pytest

from tests.conftest import ROOT, run_cli

TINY = [
    "--trainer.max_steps",
    "3",
    "--trainer.enable_progress_bar",
    "false",
    "--data.init_args.synthetic_images",
    "32",
    "--data.init_args.batch_size",
    "8",
    "--data.init_args.num_workers",
    "0",
]


@pytest.mark.slow
def test_demo_pretrain_then_probe(tmp_path):
    run_cli(
        ["pretrain", "--config", str(ROOT / "experiments/demo/teacher_mae.yaml"), *TINY], tmp_path
    )
    teacher = tmp_path / "runs/demo/teacher"
    assert (teacher / "encoder.safetensors").exists()
    assert (teacher / "version_0/config.yaml").exists()
    assert list((teacher / "version_0").glob("events.out.tfevents*"))
    run_cli(["pretrain", "--config", str(ROOT / "experiments/demo/salt.yaml"), *TINY], tmp_path)
    salt = tmp_path / "runs/demo/salt"
    assert (salt / "encoder.safetensors").exists() and (salt / "encoder.json").exists()
    card = (salt / "encoder.md").read_text()  # the model card
    assert "usjepa.methods.jepa.SALTModule" in card and "| train_frames |" in card
    assert "pretrained_cfg_overlay" in card and "| synthetic_bmode |" in card
    assert "| schedule | WarmupCosine |" in card and "| warmup_fraction | 0.1 |" in card
    assert (salt / "version_0/checkpoints/last.ckpt").exists()
    proc = run_cli(
        [
            "probe",
            "--config",
            str(ROOT / "experiments/probe/demo.yaml"),
            "--protocol.seeds",
            "[0, 1]",
            "--protocol.epochs",
            "3",
        ],
        tmp_path,
    )
    assert "student_salt" in proc.stdout and "±" in proc.stdout
    summary = pd.read_csv(tmp_path / "runs/probe/demo/probe_summary.csv")
    assert list(summary["model"]) == ["random_init", "teacher_mae", "student_salt"]
    assert (summary["count"] == 2).all()


def test_salt_without_teacher_checkpoint_says_what_to_run(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "usjepa",
            "pretrain",
            "--config",
            str(ROOT / "experiments/demo/salt.yaml"),
            *TINY,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode != 0
    assert "make pretrain" in proc.stderr + proc.stdout


def test_unknown_command_prints_usage():
    proc = subprocess.run(
        [sys.executable, "-m", "usjepa", "frobnicate"], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "pretrain" in proc.stderr


@pytest.mark.slow
def test_ddp_and_bf16_are_trainer_flags(tmp_path):
    """Two CPU processes under DDP (gloo) with bf16 autocast, through the real CLI, with
    the README's speed and memory switches on: fused AdamW (the demo clips gradients),
    the bf16 teacher and selective activation checkpointing."""
    run_cli(
        ["pretrain", "--config", str(ROOT / "experiments/demo/teacher_mae.yaml"), *TINY], tmp_path
    )
    proc = run_cli(
        [
            "pretrain",
            "--config",
            str(ROOT / "experiments/demo/salt.yaml"),
            *TINY,
            "--trainer.accelerator",
            "cpu",
            "--trainer.devices",
            "2",
            "--trainer.strategy",
            "ddp",
            "--trainer.precision",
            "bf16-mixed",
            "--model.init_args.optimizer.init_args.fused",
            "true",
            "--model.init_args.teacher_dtype",
            "bfloat16",
            "--model.init_args.activation_checkpointing",
            "selective",
        ],
        tmp_path,
    )
    out = proc.stdout + proc.stderr
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in out
    saved = sorted((tmp_path / "runs/demo/salt").glob("version_*/config.yaml"))[-1].read_text()
    assert "fused: true" in saved and "gradient_clip_val: 1.0" in saved
    assert "teacher_dtype: bfloat16" in saved and "activation_checkpointing: selective" in saved
    assert (tmp_path / "runs/demo/salt/encoder.safetensors").exists()


@pytest.mark.slow
def test_one_line_switches_salt_to_ema_and_usrc_to_plain_masks(tmp_path):
    """Each comparison of the paper is one changed YAML line, run through the real CLI."""
    run_cli(
        ["pretrain", "--config", str(ROOT / "experiments/demo/teacher_mae.yaml"), *TINY], tmp_path
    )
    salt = (ROOT / "experiments/demo/salt.yaml").read_text()
    switches = {
        "ema": ("class_path: usjepa.methods.SALTModule", "class_path: usjepa.methods.IJEPAModule"),
        "plain": ("    scan_region: true", "    scan_region: false"),
    }
    for name, (old, new) in switches.items():
        assert salt.count(old) == 1
        config = tmp_path / f"{name}.yaml"
        config.write_text(salt.replace(old, new))
        proc = run_cli(["pretrain", "--config", str(config), *TINY], tmp_path)
        saved = sorted((tmp_path / "runs/demo/salt").glob("version_*/config.yaml"))[-1].read_text()
        assert new.strip() in saved, proc.stdout[-2000:]


def test_probe_models_and_tasks_by_name(tmp_path):
    """`make probe MODELS=... TASKS=...`: config names, exports and zoo entries against
    several task folders, one table (rows models, columns tasks), CSV, Markdown and
    TensorBoard."""
    import timm
    from safetensors.torch import save_file

    from usjepa.data.synthetic import generate_task
    from usjepa.models import ViTEncoder
    from usjepa.models.export import export_encoder

    for name, seed in (("task_a", 3), ("task_b", 4)):
        generate_task(
            tmp_path / name,
            n_patients_train_val=12,
            n_patients_test=6,
            images_per_patient=6,
            size=32,
            seed=seed,
            progress=False,
        )
    export_encoder(
        ViTEncoder(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2),
        tmp_path / "mine" / "encoder.safetensors",
    )
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0)
    save_file(vit.state_dict(), str(tmp_path / "tiny.safetensors"))
    config = (
        (ROOT / "experiments/probe/demo.yaml").read_text().replace("img_size: 64", "img_size: 32")
    )
    (tmp_path / "probe.yaml").write_text(config)
    models = "[random_init, mine/encoder.safetensors, timm/vit_tiny_patch16_224:tiny.safetensors]"
    run_cli(
        [
            "probe",
            "--config",
            "probe.yaml",
            "--models",
            models,
            "--task_roots",
            "[task_a, task_b]",
            "--protocol.seeds",
            "[0]",
            "--protocol.epochs",
            "2",
            "--encoders.random_init.init_args.img_size",
            "32",
            "--out_dir",
            "out",
        ],
        tmp_path,
    )
    summary = pd.read_csv(tmp_path / "out/probe_summary.csv")
    assert set(summary["task"]) == {"task_a", "task_b"}
    assert set(summary["model"]) == {"random_init", "mine", "vit_tiny_patch16_224"}
    table = (tmp_path / "out/probe_table.md").read_text()
    assert "task_a" in table and "task_b" in table
    assert list((tmp_path / "out/tensorboard").glob("events.out.tfevents*"))
    assert (tmp_path / "out/probe_table.png").exists()


def test_importing_usjepa_changes_no_process_setting():
    """A notebook and the command start from the same process state: importing the
    package, its models and its command line writes no environment variable (the
    libraries that write some at import, timm, Lightning and OpenCV, load on first use)."""
    probe = (
        "import os\n"
        "before = dict(os.environ)\n"
        "import usjepa, usjepa.models, usjepa.cli\n"
        "print(sorted(k for k in {*before, *os.environ} if before.get(k) != os.environ.get(k)))\n"
    )
    # a bare environment: what this test process's own imports wrote is not inherited
    bare = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/")}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=bare)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[-2] == "[]"
