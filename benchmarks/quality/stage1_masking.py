"""Which masks make the better stage-1 teacher: the union of the target blocks, or every
patch outside the context (SALT's public stage 1)?

The demo's stage-1 MAE teacher (``experiments/demo/teacher_mae.yaml``, 700 steps) with
multi-block masks in two arms that differ by one line of the mask generator:
``union_targets: true`` (reconstruct the union of the 4 target blocks) and
``outside_context: true`` (reconstruct every patch outside the context block). Each arm
is trained for every pretraining seed given (``seed_everything`` and the encoder's
``init_seed`` change; data and steps stay); every teacher is probed with the demo
protocol (same poolings, head grid and probe seeds) on the synthetic lesion task. The
arms are compared per pretraining seed, then averaged. Writes
``benchmarks/results/quality/stage1_masking/{per_seed.csv,stage1_masking.md}``.

    python -m benchmarks.quality.stage1_masking --pretrain-seeds 0,1
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import record_env, results_dir
from benchmarks.quality.reproduction import ARCH, cli  # the demo architecture; the CLI, timed

ROOT = Path(__file__).resolve().parents[2]
RANDOM = """      class_path: usjepa.masks.RandomMaskGenerator
      init_args: {mask_ratio: 0.75}"""
ARMS = {
    "union_targets": """      class_path: usjepa.masks.MultiBlockMaskGenerator
      init_args: {union_targets: true}""",
    "outside_context": """      class_path: usjepa.masks.MultiBlockMaskGenerator
      init_args: {outside_context: true}""",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", default=str(ROOT / ".cache" / "bench_stage1"))
    parser.add_argument("--out", default=str(results_dir(__file__) / "stage1_masking"))
    parser.add_argument("--pretrain-seeds", default="0,1")
    parser.add_argument("--seeds", default="[0, 1, 2, 3, 4]", help="probe seeds")
    ns = parser.parse_args()
    work = Path(ns.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    base = (ROOT / "experiments/demo/teacher_mae.yaml").read_text()
    if RANDOM not in base:
        sys.exit("stage1_masking: the demo teacher's mask generator changed; update RANDOM")
    seeds = [int(s) for s in ns.pretrain_seeds.split(",")]
    minutes: dict[str, float] = {}
    runs = {}
    for seed in seeds:
        for arm, block in ARMS.items():
            run = f"{arm}_s{seed}"
            runs[run] = (arm, seed)
            done = work / "runs/stage1" / run / "encoder.safetensors"
            if done.exists():  # resumable: a finished teacher is kept
                continue
            text = base.replace(RANDOM, block)
            text = text.replace("seed_everything: 0", f"seed_everything: {seed}")
            text = text.replace("init_seed: 1}", f"init_seed: {1 + seed}}}")
            (work / f"{run}.yaml").write_text(text)
            shutil.rmtree(work / "runs/demo/teacher", ignore_errors=True)
            minutes[run] = cli(
                ["pretrain", "--config", str(work / f"{run}.yaml"),
                 "--trainer.enable_progress_bar", "false"], work,
            )  # fmt: skip
            shutil.copytree(work / "runs/demo/teacher", done.parent, dirs_exist_ok=True)
    encoders = {
        run: {
            "class_path": "usjepa.models.ViTEncoder",
            "init_args": {**ARCH, "checkpoint": f"runs/stage1/{run}/encoder.safetensors"},
        }
        for run in runs
    }
    cli(
        ["probe", "--config", str(ROOT / "experiments/probe/demo.yaml"),
         "--encoders", json.dumps(encoders), "--protocol.seeds", ns.seeds,
         "--out_dir", "runs/stage1/probe"], work,
    )  # fmt: skip
    per_probe = pd.read_csv(work / "runs/stage1/probe/probe_per_seed.csv")
    out = Path(ns.out)
    out.mkdir(parents=True, exist_ok=True)
    per_probe.to_csv(out / "probe_per_seed.csv", index=False)
    f1 = per_probe.groupby("model")["macro_f1"].mean() * (
        100 if per_probe["macro_f1"].max() <= 1 else 1
    )
    rows = []
    for seed in seeds:
        rows.append({"pretrain_seed": seed, **{arm: f1[f"{arm}_s{seed}"] for arm in ARMS}})
    table = pd.DataFrame(rows)
    table["difference"] = table["outside_context"] - table["union_targets"]
    table.to_csv(out / "per_seed.csv", index=False)
    d = table["difference"].to_numpy()
    spread = f" ± {d.std(ddof=1):.1f}" if len(d) > 1 else ""
    lines = [
        "# Stage-1 masks: union of the targets against everything outside the context",
        "",
        "Demo stage-1 MAE teacher (64 px, patch 8, ViT width 192, depth 6, 700 steps), "
        "multi-block masks, two arms one line apart; linear-probe macro F1 (%) on the "
        f"synthetic lesion task, mean over probe seeds {ns.seeds}, per pretraining seed. "
        "Command: `python -m benchmarks.quality.stage1_masking "
        f"--pretrain-seeds {ns.pretrain_seeds}`.",
        "",
        "| pretraining seed | union of targets | outside the context | difference |",
        "|---|---|---|---|",
        *[
            f"| {r.pretrain_seed} | {r.union_targets:.1f} | {r.outside_context:.1f} | "
            f"{r.difference:+.1f} |"
            for r in table.itertuples()
        ],  # fmt: skip
        "",
        f"Outside the context minus union: {d.mean():+.1f}{spread} points over "
        f"{len(d)} pretraining seeds ({int((d > 0).sum())} of {len(d)} ahead). "
        f"Training minutes: {', '.join(f'{k} {v:.1f}' for k, v in minutes.items()) or 'reused'}.",
    ]
    record_env(out / "stage1_masking.md")
    (out / "stage1_masking.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if len(d) > 1 and abs(d.mean()) < 2 * d.std(ddof=1) / np.sqrt(len(d)):
        print("the two arms do not separate at these seeds")


if __name__ == "__main__":
    main()
