"""The paper's comparisons on the synthetic data, each one YAML line apart.

Trains the demo MAE teacher once, then three students for the same number of steps from
the demo SALT config (``experiments/demo/salt.yaml``), each differing by one line:

* ``salt_usrc``: SALT with scan-region (USrc) masks, the config as it is;
* ``salt_plain``: SALT with plain multi-block masks (``scan_region: false``);
* ``ijepa_usrc``: I-JEPA, targets from an EMA of the student (``IJEPAModule``).

All are probed with the demo protocol beside a random-init encoder and the teacher
(same poolings, head grid, seeds) on the synthetic lesion task. Writes
``benchmarks/results/reproduction.{md,csv}``; what is measured is reported as it is.

    python benchmarks/reproduction.py            # about 25 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
ARCH = {"img_size": 64, "patch_size": 8, "embed_dim": 192, "depth": 6, "num_heads": 3}
VARIANTS = {
    "salt_usrc": None,
    "salt_plain": ("    scan_region: true", "    scan_region: false"),
    "ijepa_usrc": (
        "class_path: usjepa.methods.SALTModule",
        "class_path: usjepa.methods.IJEPAModule",
    ),
}


def cli(args: list[str], work: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "usjepa", *args], cwd=work, check=True)
    return (time.perf_counter() - start) / 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", default=str(ROOT / ".cache" / "bench_repro"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "reproduction"))
    parser.add_argument("--steps", type=int, default=None, help="student steps (config's)")
    parser.add_argument("--seeds", default="[0, 1, 2, 3, 4]")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    quiet = ["--trainer.enable_progress_bar", "false"]
    minutes = {}
    if not (work / "runs/demo/teacher/encoder.safetensors").exists():
        minutes["teacher_mae"] = cli(
            ["pretrain", "--config", str(ROOT / "experiments/demo/teacher_mae.yaml"), *quiet], work
        )
    salt = (ROOT / "experiments/demo/salt.yaml").read_text()
    steps = ["--trainer.max_steps", str(args.steps)] if args.steps else []
    for name, change in VARIANTS.items():
        done = work / "runs/repro" / name / "encoder.safetensors"
        if done.exists():
            continue
        config = work / f"{name}.yaml"
        config.write_text(salt if change is None else salt.replace(*change))
        shutil.rmtree(work / "runs/demo/salt", ignore_errors=True)
        minutes[name] = cli(["pretrain", "--config", str(config), *quiet, *steps], work)
        shutil.copytree(work / "runs/demo/salt", done.parent, dirs_exist_ok=True)
    encoders = {
        "random_init": {
            "class_path": "usjepa.models.ViTEncoder",
            "init_args": {**ARCH, "init_seed": 2},
        },
        "teacher_mae": {
            "class_path": "usjepa.models.ViTEncoder",
            "init_args": {**ARCH, "checkpoint": "runs/demo/teacher/encoder.safetensors"},
        },
    }
    for name in VARIANTS:
        encoders[name] = {
            "class_path": "usjepa.models.ViTEncoder",
            "init_args": {**ARCH, "checkpoint": f"runs/repro/{name}/encoder.safetensors"},
        }
    cli(
        [
            "probe",
            "--config",
            str(ROOT / "experiments/probe/demo.yaml"),
            "--encoders",
            json.dumps(encoders),
            "--seeds",
            args.seeds,
            "--out_dir",
            "runs/repro/probe",
        ],
        work,
    )
    summary = pd.read_csv(work / "runs/repro/probe/probe_summary.csv")
    steps_of = {}
    for name in ["teacher_mae", *VARIANTS]:
        folder = "runs/demo/teacher" if name == "teacher_mae" else f"runs/repro/{name}"
        steps_of[name] = json.loads((work / folder / "encoder.json").read_text()).get(
            "trained_steps"
        )
    summary["steps"] = summary["model"].map(steps_of)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    summary.to_csv(out.with_suffix(".csv"), index=False)
    f1 = summary.set_index("model")["mean"]
    sd = summary.set_index("model")["std"]
    lines = [
        "# Reproduction on the synthetic data",
        "",
        "Linear-probe macro F1 (%) on the synthetic 6-class lesion task, mean ± std over "
        f"{summary['count'].iloc[0]} seeds, demo architecture (64 px, patch 8, ViT width 192, "
        "depth 6), 2 CPU cores. Students share steps, data, seeds and probe protocol.",
        "",
        "| encoder | steps | macro F1 |",
        "|---|---|---|",
    ]
    for model in summary["model"]:
        step = steps_of.get(model)
        lines.append(
            f"| {model} | {step if step is not None else '-'} | {f1[model]:.1f} ± {sd[model]:.1f} |"
        )
    comparisons = [
        ("SALT student vs its frozen teacher", "salt_usrc", "teacher_mae"),
        ("SALT student vs random init", "salt_usrc", "random_init"),
        ("SALT vs EMA I-JEPA (equal steps)", "salt_usrc", "ijepa_usrc"),
        ("USrc vs plain masks (SALT)", "salt_usrc", "salt_plain"),
    ]
    lines += ["", "| comparison | difference (F1 points) |", "|---|---|"]
    lines += [f"| {label} | {f1[a] - f1[b]:+.1f} |" for label, a, b in comparisons]
    if minutes:
        lines += [
            "",
            "Training minutes this run: " + ", ".join(f"{k} {v:.1f}" for k, v in minutes.items()),
        ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
