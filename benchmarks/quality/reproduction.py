"""The paper's comparisons on the synthetic data, each one YAML line apart.

Trains the demo MAE teacher once, then three students for the same number of steps from
the demo SALT config (``experiments/demo/salt.yaml``), each differing by one line:

* ``salt_usrc``: SALT with scan-region (USrc) masks, the config as it is;
* ``salt_plain``: SALT with plain multi-block masks (``scan_region: false``);
* ``ijepa_usrc``: I-JEPA, targets from an EMA of the student (``IJEPAModule``), with
  I-JEPA's per-block predictor (``one_pass: false``);
* ``salt_usrc_per_block``: ``salt_usrc`` with I-JEPA's per-block predictor (``one_pass:
  false``, ``docs/fidelity.md`` O3), not run unless chosen. Until the demo predicted in
  one pass this comparison ran as ``salt_usrc_one_pass`` against ``salt_usrc``.

All are probed with the demo protocol beside a random-init encoder and the teacher
(same poolings, head grid, seeds) on the synthetic lesion task. Writes
``results/quality/reproduction/reproduction.{md,csv}``; what is measured is reported as it is.

    python -m benchmarks.quality.reproduction            # about 25 minutes on 2 CPU cores
    python -m benchmarks.quality.reproduction --pretrain-seeds 0,1,2   # students 3 times over
    python -m benchmarks.quality.reproduction --variants salt_usrc,salt_plain   # USrc vs plain only

With several pretraining seeds each student is trained once per seed (``seed_everything``
and the student's ``init_seed`` change; data, steps and teacher stay), and the comparisons
are made per seed, then averaged: a gap is only as good as its spread over pretraining.
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

from benchmarks.common import record_env, results_dir

ROOT = Path(__file__).resolve().parents[2]
ARCH = {"img_size": 64, "patch_size": 8, "embed_dim": 192, "depth": 6, "num_heads": 3}
ONE_PASS = "init_args: {width: 96, depth: 2, num_heads: 4, one_pass: true}"
PER_BLOCK = "init_args: {width: 96, depth: 2, num_heads: 4, one_pass: false}"
#: variant -> the (line, replacement) pairs that make it from the demo config
VARIANTS: dict[str, list[tuple[str, str]]] = {
    "salt_usrc": [],
    "salt_plain": [("    scan_region: true", "    scan_region: false")],
    "ijepa_usrc": [
        ("class_path: usjepa.methods.SALTModule", "class_path: usjepa.methods.IJEPAModule"),
        (ONE_PASS, PER_BLOCK),  # I-JEPA predicts each target block in its own sequence
    ],
    "salt_usrc_per_block": [(ONE_PASS, PER_BLOCK)],
}


def cli(args: list[str], work: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "usjepa", *args], cwd=work, check=True)
    return (time.perf_counter() - start) / 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", default=str(ROOT / ".cache" / "bench_repro"))
    parser.add_argument("--out", default=str(results_dir(__file__) / "reproduction"))
    parser.add_argument("--steps", type=int, default=None, help="student steps (config's)")
    parser.add_argument("--seeds", default="[0, 1, 2, 3, 4]", help="probe seeds")
    parser.add_argument("--pretrain-seeds", default="0", help="comma-separated, e.g. 0,1,2")
    parser.add_argument(
        "--variants",
        default="salt_usrc,salt_plain,ijepa_usrc",
        help=f"comma-separated of {list(VARIANTS)}",
    )
    args = parser.parse_args()
    chosen = args.variants.split(",")
    if unknown := set(chosen) - set(VARIANTS):
        parser.error(f"unknown variants {sorted(unknown)}; choose from {list(VARIANTS)}")
    work = Path(args.work).resolve()  # the CLI runs inside it
    work.mkdir(parents=True, exist_ok=True)
    quiet = ["--trainer.enable_progress_bar", "false"]
    minutes = {}
    if not (work / "runs/demo/teacher/encoder.safetensors").exists():
        minutes["teacher_mae"] = cli(
            ["pretrain", "--config", str(ROOT / "experiments/demo/teacher_mae.yaml"), *quiet], work
        )
    salt = (ROOT / "experiments/demo/salt.yaml").read_text()
    steps = ["--trainer.max_steps", str(args.steps)] if args.steps else []
    pretrain_seeds = [int(x) for x in args.pretrain_seeds.split(",")]
    runs = {}  # run name -> (variant, pretraining seed)
    for seed in pretrain_seeds:
        for name, change in VARIANTS.items():
            if name not in chosen:
                continue
            run = name if seed == 0 else f"{name}_s{seed}"
            runs[run] = (name, seed)
            done = work / "runs/repro" / run / "encoder.safetensors"
            if done.exists():
                continue
            text = salt
            for line, replacement in change:
                if line not in text:
                    sys.exit(f"reproduction: {name}'s line {line!r} is no longer in "
                             "experiments/demo/salt.yaml; update VARIANTS")  # fmt: skip
                text = text.replace(line, replacement)
            text = text.replace("seed_everything: 0", f"seed_everything: {seed}")
            text = text.replace("init_seed: 2}", f"init_seed: {2 + seed}}}")
            config = work / f"{run}.yaml"
            config.write_text(text)
            shutil.rmtree(work / "runs/demo/salt", ignore_errors=True)
            minutes[run] = cli(["pretrain", "--config", str(config), *quiet, *steps], work)
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
    for run in runs:
        encoders[run] = {
            "class_path": "usjepa.models.ViTEncoder",
            "init_args": {**ARCH, "checkpoint": f"runs/repro/{run}/encoder.safetensors"},
        }
    cli(
        [
            "probe",
            "--config",
            str(ROOT / "experiments/probe/demo.yaml"),
            "--encoders",
            json.dumps(encoders),
            "--protocol.seeds",
            args.seeds,
            "--out_dir",
            "runs/repro/probe",
        ],
        work,
    )
    summary = pd.read_csv(work / "runs/repro/probe/probe_summary.csv")
    steps_of = {}
    for name in ["teacher_mae", *runs]:
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
        ("one-pass vs per-block predictor (SALT, USrc)", "salt_usrc", "salt_usrc_per_block"),
    ]

    def score(model: str, seed: int) -> float:
        return f1[model if model not in VARIANTS or seed == 0 else f"{model}_s{seed}"]

    fixed = {"teacher_mae", "random_init"}
    comparisons = [c for c in comparisons if {c[1], c[2]} - fixed <= set(chosen)]
    rows = []
    for label, a, b in comparisons:
        gaps = pd.Series([score(a, s) - score(b, s) for s in pretrain_seeds])
        rows.append((label, gaps))
    if len(pretrain_seeds) == 1:
        lines += ["", "| comparison | difference (F1 points) |", "|---|---|"]
        lines += [f"| {label} | {gaps.iloc[0]:+.1f} |" for label, gaps in rows]
    else:
        per_variant = {name: pd.Series([score(name, s) for s in pretrain_seeds]) for name in chosen}
        lines += [
            "",
            f"Over {len(pretrain_seeds)} pretraining seeds ({args.pretrain_seeds}): each "
            "student's probe mean, averaged, ± std across pretraining seeds.",
            "",
            "| student | macro F1 | per seed |",
            "|---|---|---|",
        ]
        lines += [
            f"| {name} | {v.mean():.1f} ± {v.std():.1f} | {', '.join(f'{x:.1f}' for x in v)} |"
            for name, v in per_variant.items()
        ]
        lines += [
            "",
            "| comparison | difference (F1 points), mean ± std over pretraining seeds "
            "| per seed | seeds where A > B |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {label} | {g.mean():+.1f} ± {g.std():.1f} | "
            f"{', '.join(f'{x:+.1f}' for x in g)} | {(g > 0).sum()} of {len(g)} |"
            for label, g in rows
        ]
    if minutes:
        lines += [
            "",
            "Training minutes this run: " + ", ".join(f"{k} {v:.1f}" for k, v in minutes.items()),
        ]
    record_env(out.with_suffix(".md"))
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
