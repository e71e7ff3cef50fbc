"""The benchmark probe configs (eight tasks, few-shot, robustness) run through the real
CLI on a small task, so none can rot; tasks not built yet are named and skipped."""

import json

import pandas as pd
import pytest

from tests.conftest import ROOT, run_cli

PROBE = ROOT / "experiments/probe"
FAST = ["--protocol.seeds", "[0]", "--protocol.epochs", "2", "--cache_dir", "null"]


@pytest.mark.slow
def test_eight_task_probe_and_few_shot_run_on_the_tasks_that_exist(task_dir, tmp_path):
    proc = run_cli(
        [
            "probe",
            "--config",
            str(PROBE / "ultrabench.yaml"),
            "--config",
            str(PROBE / "fewshot.yaml"),
            "--models",
            "[random_init]",
            "--task_roots",
            json.dumps([str(task_dir), str(tmp_path / "not_built")]),
            "--skip_missing_tasks",
            "true",
            "--fractions",
            "[0.5, 1.0]",
            "--out_dir",
            str(tmp_path / "out"),
            *FAST,
        ],
        tmp_path,
    )
    assert "skipping 1 of 2 tasks" in proc.stdout and "not_built" in proc.stdout
    summary = pd.read_csv(tmp_path / "out/probe_summary.csv")
    assert list(summary["model"]) == ["random_init"]
    assert (tmp_path / "out/fewshot.csv").exists()


@pytest.mark.slow
def test_robustness_config_runs(task_dir, tmp_path):
    small = {
        "random_init": {
            "class_path": "usjepa.models.ViTEncoder",
            "init_args": {
                "img_size": 64,
                "patch_size": 16,
                "embed_dim": 32,
                "depth": 1,
                "num_heads": 2,
            },
        }
    }
    run_cli(
        [
            "robustness",
            "--config",
            str(PROBE / "robustness_pocus.yaml"),
            "--task.init_args.root",
            str(task_dir),
            "--task.init_args.img_size",
            "64",
            "--encoders",
            json.dumps(small),
            "--corruptions",
            "[speckle]",
            "--severities",
            "[1, 5]",
            "--out_dir",
            str(tmp_path / "rob"),
            *FAST,
        ],
        tmp_path,
    )
    table = pd.read_csv(tmp_path / "rob/robustness.csv")
    assert set(table["corruption"]) >= {"speckle"}
