"""Every paper-scale recipe in experiments/recipe builds through the real CLI and trains a
few CPU steps with small overrides, so no recipe config can rot."""

from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, run_cli, urfm_file

RECIPE = ROOT / "experiments/recipe"
SMALL_VIT = {"img_size": 64, "patch_size": 16, "embed_dim": 32, "depth": 1, "num_heads": 2}
# the URFM teacher entry keeps its ViT-B/16 layout and 224 px, one block deep
URFM_OVERRIDES = {"depth": 1}


def _small(tmp: Path, method: str, teacher: str | None) -> dict:
    """Overrides that shrink a recipe to CPU size; everything else stays the recipe's."""
    trainer = {
        "accelerator": "cpu",
        "devices": 1,
        "num_nodes": 1,
        "strategy": "auto",
        "precision": "32-true",
        "max_steps": 3,
        "val_check_interval": 2,
        "limit_val_batches": 1,
        "enable_progress_bar": False,
        "default_root_dir": str(tmp / "run"),
    }
    data = {
        "manifest": str(tmp / "corpus/manifest.parquet"),
        "shards": None,
        "synthesize_if_missing": True,
        "synthetic_images": 24,
        "batch_size": 4,
        "num_workers": 0,
        "test_index": [],
        "mask_generator": {"init_args": {"min_keep": 2}},  # img_size and grid: linked
    }
    if method == "mae":
        model = {
            "encoder": {"init_args": SMALL_VIT},
            "decoder": {"init_args": {"width": 32, "depth": 1, "num_heads": 2}},
        }
    else:
        width = 768 if teacher == "urfm" else 32
        if method == "ema":
            width = 32
        model = {
            "student": {"init_args": SMALL_VIT},
            "predictor": {
                "init_args": {
                    "out_dim": width,
                    "width": 32,
                    "depth": 1,
                    "num_heads": 2,
                }
            },
        }
        if teacher == "urfm":
            model["teacher"] = {
                "init_args": {
                    "checkpoint": str(tmp / "urfm.pth"),
                    "arch_overrides": URFM_OVERRIDES,
                }
            }
        elif teacher == "own":
            model["teacher"] = {
                "init_args": {**SMALL_VIT, "checkpoint": str(tmp / "teacher/encoder.safetensors")}
            }
    return {"trainer": trainer, "model": {"init_args": model}, "data": {"init_args": data}}


CASES = {
    "usrc_jepa": (["salt_vitb16.yaml"], "salt", "urfm"),
    "us_jepa_plain": (["salt_vitb16.yaml", "plain_masks.yaml"], "salt", "urfm"),
    "ema_ijepa": (["salt_vitb16.yaml", "ema_ijepa.yaml"], "ema", None),
    "stage1_then_own_teacher": (["salt_vitb16.yaml", "own_teacher.yaml"], "salt", "own"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_recipe_builds_and_trains_on_cpu(case, tmp_path):
    configs, method, teacher = CASES[case]
    if teacher == "urfm":
        urfm_file(tmp_path)
    if teacher == "own":  # stage 1 first, into the folder stage 2 reads
        stage1 = _small(tmp_path, "mae", None)
        stage1["trainer"]["default_root_dir"] = str(tmp_path / "teacher")
        (tmp_path / "stage1.yaml").write_text(yaml.safe_dump(stage1))
        run_cli(
            [
                "pretrain",
                "--config",
                str(RECIPE / "teacher_stage1_vitb16.yaml"),
                "--config",
                str(tmp_path / "stage1.yaml"),
            ],
            tmp_path,
        )
        assert (tmp_path / "teacher/encoder.safetensors").exists()
    (tmp_path / "small.yaml").write_text(yaml.safe_dump(_small(tmp_path, method, teacher)))
    args = ["pretrain"]
    for name in configs:
        args += ["--config", str(RECIPE / name)]
    proc = run_cli([*args, "--config", str(tmp_path / "small.yaml")], tmp_path)
    run = tmp_path / "run"
    assert (run / "encoder.safetensors").exists(), proc.stdout[-2000:]
    saved = yaml.safe_load(next(run.rglob("config.yaml")).read_text())
    # what the small overrides left alone is the recipe's
    masks = saved["data"]["init_args"]["mask_generator"]["init_args"]
    assert masks["num_targets"] == 4 and masks["target_scale"] == [0.15, 0.2]
    assert saved["data"]["init_args"]["scan_region"] is ("plain" not in case)
    model = saved["model"]
    expected = "IJEPAModule" if method == "ema" else "SALTModule"
    assert model["class_path"].endswith(expected)
    optimizer = model["init_args"]["optimizer"]["init_args"]
    if method == "salt":  # SALT's AdamW; the EMA baseline puts back I-JEPA's
        assert optimizer["lr"] == 6.25e-4 and optimizer["betas"] == [0.9, 0.95]
    else:
        assert optimizer["lr"] == 1.25e-4 and optimizer["betas"] == [0.9, 0.999]
    if method == "salt":
        assert model["init_args"]["target_norm"] == "none"
        assert model["init_args"]["predictor"]["init_args"]["out_dim"] == (
            768 if teacher == "urfm" else 32
        )


def test_slurm_script_launches_one_pretrain_per_task(tmp_path):
    """The SLURM script hands srun the recipe, the node count and the GPUs per node."""
    import os
    import subprocess

    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "srun").write_text('#!/bin/bash\necho "$@"\n')
    (fake / "srun").chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{fake}:{os.environ['PATH']}",
        "SLURM_JOB_NUM_NODES": "4",
        "SLURM_NTASKS_PER_NODE": "8",
        "SLURM_CPUS_PER_TASK": "10",
    }
    script = RECIPE / "slurm_pretrain.sh"
    out = subprocess.run(
        ["bash", str(script), "experiments/recipe/salt_vitb16.yaml", "--config", "x.yaml"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout.split()
    assert out[:4] == [".venv/bin/python", "-m", "usjepa", "pretrain"]
    assert out[out.index("--trainer.num_nodes") + 1] == "4"
    assert out[out.index("--trainer.devices") + 1] == "8"
    assert out.count("--config") == 2
