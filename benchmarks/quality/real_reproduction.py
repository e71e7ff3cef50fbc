r"""Probe macro F1 against pretraining minutes on real scans: random init, the stage-1
teacher and the SALT student, each with USrc and with plain masks.

The recipe configs (``experiments/recipe/``) run through the real CLI, shrunk to a CPU
run by ``benchmarks/results/quality/real_pipeline/small_cpu*.yaml``, on a corpus built from real
public frames (README, "Real-data reproduction"), and every snapshot is probed on a real
labelled task that shares no image with the corpus.

Two arms run side by side, one CPU thread each, so that they get the same machine:

* stage 1 (MAE teacher, multi-block masks) for ``--teacher-minutes``, USrc and plain;
* stage 2 (SALT student against its arm's final teacher) for ``--student-minutes``.

Each stage's step budget (it sets the LR schedule) comes from a short calibration run of
both arms together; ``max_time`` stops a stage that runs slow. Encoder snapshots are
written every ``--every`` minutes. Minutes on the x axis are cumulative per arm: the
student's curve starts where its teacher's training ended.

Writes ``<out>/real_reproduction.{csv,md,png}`` (with each snapshot's validation F1, the
mean over probe seeds, in ``val_mean``) and the probe's ``probe_per_seed.csv``, and keeps
the run in ``--work``. ``--stage report`` rewrites them from ``--work`` without probing;
``--stage seeds`` puts several runs' ``--out`` folders side by side, each arm at the end
of each stage and at the snapshot with the best validation F1 (its test F1 reported).

    python -m benchmarks.quality.real_reproduction \\
        --manifest /data/corpus_real/manifest_clean.parquet \\
        --shards /data/shards_real --task /data/tasks/busi
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pandas as pd

from benchmarks.common import record_env, results_dir
from benchmarks.quality.f1_curves import plot_curves, probe_snapshots, table_lines, usjepa_command

ROOT = Path(__file__).resolve().parents[2]
SMALL = "benchmarks/results/quality/real_pipeline"
ARMS = ("usrc", "plain")
#: the row of each arm and stage at the snapshot its validation F1 chooses
BEST = "best on validation"
#: with a given step budget the clock stops a stage at this many times its minutes (+1):
#: at minutes + 1, the USrc students of seeds 0 and 2 stopped at 94 % and 97 % of their steps
REPLICATE_CLOCK = 1.5
STAGES = {
    "teacher": ("experiments/recipe/teacher_stage1_vitb16.yaml", f"{SMALL}/small_cpu_stage1.yaml"),
    "student": ("experiments/recipe/salt_vitb16.yaml", f"{SMALL}/small_cpu.yaml"),
}


def command(
    stage: str, arm: str, ns: argparse.Namespace, runs: Path, extra: list[str]
) -> list[str]:
    """The CLI call for one arm of one stage, writing into ``runs/<stage>_<arm>``; a student
    reads its arm's final teacher from ``--work``."""
    recipe, small = STAGES[stage]
    out = runs / f"{stage}_{arm}"
    cmd = usjepa_command("pretrain", ROOT / recipe)
    if stage == "student":
        cmd += ["--config", str(ROOT / "experiments/recipe/own_teacher.yaml")]
    cmd += [
        "--config",
        str(ROOT / small),
        "--data.init_args.manifest",
        ns.manifest,
        "--data.init_args.shards",
        ns.shards,
        "--data.init_args.test_index",
        json.dumps([ns.task]),
        "--data.init_args.scan_region",
        "true" if arm == "usrc" else "false",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.val_check_interval",
        "200",
        "--trainer.default_root_dir",
        str(out),
        "--seed_everything",
        str(ns.seed),
    ]
    if ns.init_seed is not None:  # the encoder this stage trains; the recipe's otherwise
        trained = "encoder" if stage == "teacher" else "student"
        cmd += [f"--model.init_args.{trained}.init_args.init_seed", str(ns.init_seed)]
    if stage == "student":
        cmd += [
            "--model.init_args.teacher.init_args.checkpoint",
            str(ROOT / ns.work / f"teacher_{arm}" / "encoder.safetensors"),
        ]
    return cmd + extra


def callbacks(out: Path, stage: str, every: float) -> str:
    return json.dumps(
        [
            {
                "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                "init_args": {"save_last": True},
            },
            {
                "class_path": "usjepa.callbacks.ExportEncoder",
                "init_args": {
                    "path": str(out / "encoder.safetensors"),
                    "attribute": "encoder" if stage == "teacher" else "student",
                    "every_minutes": every,
                },
            },
        ]
    )


def side_by_side(cmds: dict[str, list[str]], logs: Path, threads: int) -> dict[str, float]:
    """Run the arms' commands at once, ``threads`` each; wall seconds per arm."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    logs.mkdir(parents=True, exist_ok=True)
    procs, start, took = {}, time.perf_counter(), {}
    for name, cmd in cmds.items():
        log = open(logs / f"{name}.log", "w")  # noqa: SIM115 (closed with the process)
        procs[name] = (subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log), log)
    for name, (proc, log) in procs.items():
        rc = proc.wait()
        took[name] = time.perf_counter() - start
        log.close()
        if rc:
            raise SystemExit(f"{name} failed (exit {rc}); see {logs / (name + '.log')}")
    return took


def calibrate(stage: str, ns: argparse.Namespace, work: Path) -> float:
    """Steps per minute of one arm while both run: a short run on the clock (Lightning's
    timer starts with training, so start-up is not counted), steps read from its checkpoint."""
    import torch

    cal = work / "calibration"
    save = json.dumps(
        [
            {
                "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                "init_args": {"save_last": True},
            }
        ]
    )
    secs = int(ns.calib_minutes * 60)
    cmds = {
        f"{stage}_{arm}": command(
            stage,
            arm,
            ns,
            cal,
            [
                "--trainer.max_steps",
                "1000000",
                "--trainer.limit_val_batches",
                "0",
                "--trainer.max_time",
                f"00:00:{secs // 60:02d}:{secs % 60:02d}",
                "--trainer.callbacks",
                save,
            ],
        )
        for arm in ARMS
    }
    side_by_side(cmds, cal / "logs", ns.threads)
    steps = []
    for arm in ARMS:
        last = next((cal / f"{stage}_{arm}").rglob("last.ckpt"))
        steps.append(torch.load(last, map_location="cpu", weights_only=False)["global_step"])
    rate = min(steps) / ns.calib_minutes
    print(f"calibration {stage}: {steps} steps in {ns.calib_minutes} min with both arms running")
    return rate


def train(stage: str, minutes: float, ns: argparse.Namespace, work: Path) -> None:
    steps = getattr(ns, f"{stage}_steps", None)
    if steps:  # a replicate: the step budget is the contract, the clock only a safety net
        limit = minutes * REPLICATE_CLOCK + 1
    else:  # the budget is the minutes: +1, so the clock binds only if the run is slow
        steps = max(10, int(calibrate(stage, ns, work) * minutes))
        limit = minutes + 1
    hours, mins = divmod(int(round(limit)), 60)
    cmds = {
        f"{stage}_{arm}": command(
            stage,
            arm,
            ns,
            work,
            [
                "--trainer.max_steps",
                str(steps),
                "--trainer.max_time",
                f"00:{hours:02d}:{mins:02d}:00",
                "--trainer.callbacks",
                callbacks(work / f"{stage}_{arm}", stage, ns.every),
            ],
        )
        for arm in ARMS
    }
    print(f"{stage}: {steps} steps planned, {minutes} min budget, arms {ARMS}")
    side_by_side(cmds, work / "logs", ns.threads)


def snapshots(work: Path) -> dict[str, tuple[str, str, str, float]]:
    """``name -> (checkpoint, stage, arm, cumulative minutes)``."""
    found: dict[str, tuple[str, str, str, float]] = {}
    for arm in ARMS:
        teacher = work / f"teacher_{arm}" / "encoder.json"
        offset = json.loads(teacher.read_text())["train_seconds"] / 60.0
        for stage, base in (("teacher", 0.0), ("student", offset)):
            final = json.loads((work / f"{stage}_{arm}" / "encoder.json").read_text())
            for snap in sorted((work / f"{stage}_{arm}").glob("encoder*.safetensors")):
                seconds = json.loads(snap.with_suffix(".json").read_text())["train_seconds"]
                if snap.stem != "encoder" and final["train_seconds"] - seconds < 10:
                    continue  # a snapshot taken as training ended: the final export
                found[f"{stage}_{arm}/{snap.stem}"] = (str(snap), stage, arm, base + seconds / 60.0)
    return found


def random_init(work: Path) -> Path:
    """A random-init encoder of the same architecture and input contract."""
    from usjepa.models import ViTEncoder, export_encoder
    from usjepa.models.checkpoint import read_input_spec

    ref = work / "student_usrc" / "encoder.safetensors"
    kw = json.loads(ref.with_suffix(".json").read_text())["kwargs"]
    arch = {
        k: kw[k] for k in ("img_size", "patch_size", "in_chans", "embed_dim", "depth", "num_heads")
    }
    path = work / "random_init" / "encoder.safetensors"
    export_encoder(ViTEncoder(**arch, init_seed=2), path, read_input_spec(ref))
    return path


def probe(work: Path, ns: argparse.Namespace) -> None:
    zoo = "usjepa.models.zoo.ZooEncoder"  # reads size and input contract from the export
    encoders = {
        "random_init": {
            "class_path": zoo,
            "init_args": {"name": "usjepa", "checkpoint": str(random_init(work))},
        }
    }
    for name, (ckpt, *_) in snapshots(work).items():
        encoders[name] = {"class_path": zoo, "init_args": {"name": "usjepa", "checkpoint": ckpt}}
    task = {
        "class_path": "usjepa.data.ProbeDataModule",
        "init_args": {"root": ns.task, "img_size": ns.img_size},
    }
    probe_snapshots(encoders, ns.seeds, work / "probe", task)


def report(work: Path, out: Path, ns: argparse.Namespace) -> None:
    found = snapshots(work)
    summary = pd.read_csv(work / "probe" / "probe_summary.csv")
    meta = {name: (stage, arm, minutes) for name, (_, stage, arm, minutes) in found.items()}
    meta["random_init"] = ("random_init", "-", 0.0)
    summary["stage"] = summary["model"].map(lambda m: meta[m][0])
    summary["arm"] = summary["model"].map(lambda m: meta[m][1])
    summary["minutes"] = summary["model"].map(lambda m: meta[m][2])
    summary["pretrain_seed"] = ns.seed
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(work / "probe" / "probe_per_seed.csv", out / "probe_per_seed.csv")
    summary["val_mean"] = summary["model"].map(val_means(out / "probe_per_seed.csv"))
    summary = summary.sort_values(["arm", "stage", "minutes"])
    summary.to_csv(out / "real_reproduction.csv", index=False)
    rnd = summary[summary["stage"] == "random_init"].iloc[0]
    task = Path(ns.task).name
    lines = [
        f"Probe macro F1 (%) on the real task `{task}` against cumulative CPU pretraining "
        f"minutes per arm (random init: {rnd['mean']:.1f} ± {rnd['std']:.1f}).",
        "",
        *table_lines(summary.rename(columns={"arm": "masks"}), ["masks", "stage"], rnd["mean"]),
    ]
    record_env(out / "real_reproduction.md")
    (out / "real_reproduction.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    colors = {"teacher": "tab:orange", "student": "tab:blue"}
    curves = [
        (
            summary[(summary["arm"] == arm) & (summary["stage"] == stage)],
            {"ls": {"usrc": "-", "plain": "--"}[arm], "color": colors[stage],
             "label": f"{stage} ({arm})"},
        )
        for arm in ARMS
        for stage in ("teacher", "student")
    ]  # fmt: skip
    plot_curves(
        curves,
        (rnd["mean"], rnd["std"]),
        "cumulative pretraining minutes per arm (1 CPU thread each)",
        f"linear-probe macro F1 (%) on {task}",
        out / "real_reproduction.png",
        size=(7, 4.5),
    )


def val_means(per_seed_csv: Path) -> pd.Series:
    """Each model's validation macro F1 (%), the mean over the probe seeds of the probe's
    per-seed file: what a snapshot is chosen on (its test F1 is reported)."""
    per_seed = pd.read_csv(per_seed_csv)
    return per_seed.groupby("model")["val_macro_f1"].mean() * 100


def replicates(dirs: list[str], out: Path) -> None:
    """The runs in ``dirs`` (each a ``--out`` of this script, one pretraining seed each)
    side by side: each arm's encoders at the end of each stage and at the snapshot with the
    best validation F1 (:func:`val_means`), per seed and averaged over the seeds, and the
    USrc-minus-plain gap per seed. Writes ``<out>/seeds.{csv,md,png}``."""
    runs = []
    for d in dirs:
        frame = pd.read_csv(ROOT / d / "real_reproduction.csv")
        for column in ("pretrain_seed", "val_mean"):
            if column not in frame:
                raise SystemExit(
                    f"{d}/real_reproduction.csv has no {column} column (written before "
                    "reports carried one): rewrite it with --stage report and the run's "
                    "--seed, --work and --out"
                )
        runs.append(frame)
    rows = []
    for frame in runs:
        seed = int(frame["pretrain_seed"].iloc[0])
        rnd = frame[frame["stage"] == "random_init"].iloc[0]
        rows.append(
            {"pretrain_seed": seed, "arm": "-", "stage": "random_init", "encoder": "-",
             "minutes": 0.0, "mean": rnd["mean"], "std": rnd["std"]}
        )  # fmt: skip
        for (arm, stage), group in frame[frame["arm"] != "-"].groupby(["arm", "stage"]):
            for label, row in (
                ("end", group.loc[group["minutes"].idxmax()]),
                (BEST, group.loc[group["val_mean"].idxmax()]),
            ):
                rows.append(
                    {"pretrain_seed": seed, "arm": arm, "stage": stage, "encoder": label,
                     "minutes": row["minutes"], "mean": row["mean"], "std": row["std"],
                     "val_mean": row["val_mean"]}
                )  # fmt: skip
    table = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "seeds.csv", index=False)
    seeds = sorted(table["pretrain_seed"].unique())
    pivot = table.pivot_table(
        index=["arm", "stage", "encoder"], columns="pretrain_seed", values=["mean", "std"],
        sort=False,
    )  # fmt: skip
    wide, spread = pivot["mean"], pivot["std"]
    task = runs[0]["task"].iloc[0]
    head = " | ".join(f"seed {s}" for s in seeds)
    lines = [
        f"Macro F1 (%) on `{task}`, mean ± std over 5 probe seeds, for {len(seeds)} pretraining "
        f"seeds ({', '.join(str(s) for s in seeds)}); `over seeds`: the mean of the seeds' "
        "means ± their std. `best on validation`: the arm's snapshot with the highest "
        "validation macro F1 (mean over the probe seeds), its test F1 reported. Runs: "
        + ", ".join(f"`{d}`" for d in dirs)
        + ".",
        "",
        f"| masks | stage | encoder | {head} | over seeds |",
        "|---|---|---|" + "---|" * (len(seeds) + 1),
    ]
    for key, means in wide.iterrows():
        cells = " | ".join(f"{means[s]:.1f} ± {spread.loc[key, s]:.1f}" for s in seeds)
        lines.append(
            f"| {key[0]} | {key[1]} | {key[2]} | {cells} | "
            f"{means.mean():.1f} ± {means.std(ddof=1):.1f} |"
        )
    lines += ["", "USrc minus plain, per pretraining seed (F1 points; over seeds: mean ± std):", ""]
    lines += [f"| stage | encoder | {head} | over seeds |", "|---|---|" + "---|" * (len(seeds) + 1)]
    for stage in ("teacher", "student"):
        for label in ("end", BEST):
            gap = wide.loc[("usrc", stage, label)] - wide.loc[("plain", stage, label)]
            cells = " | ".join(f"{gap[s]:+.1f}" for s in seeds)
            lines.append(
                f"| {stage} | {label} | {cells} | {gap.mean():+.1f} ± {gap.std(ddof=1):.1f} |"
            )
    record_env(out / "seeds.md")
    (out / "seeds.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    curves = []
    for frame, marker in zip(runs, "osd^v"):
        seed = int(frame["pretrain_seed"].iloc[0])
        for arm in ARMS:
            rows_ = frame[(frame["arm"] == arm) & (frame["stage"] == "student")]
            style = {"ls": {"usrc": "-", "plain": "--"}[arm], "marker": marker,
                     "color": {"usrc": "tab:blue", "plain": "tab:red"}[arm],
                     "label": f"student ({arm}), seed {seed}"}  # fmt: skip
            curves.append((rows_, style))
    rnd = table[table["stage"] == "random_init"]["mean"]
    plot_curves(
        curves,
        (float(rnd.mean()), None),
        "cumulative pretraining minutes per arm (1 CPU thread each)",
        f"linear-probe macro F1 (%) on {task}",
        out / "seeds.png",
        size=(9, 4.5),
        legend_outside=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--manifest", default="/data/corpus_real/manifest_clean.parquet")
    parser.add_argument("--shards", default="/data/shards_real")
    parser.add_argument("--task", default="/data/tasks/busi")
    parser.add_argument("--img-size", type=int, default=128, help="the small recipe's size")
    parser.add_argument("--teacher-minutes", type=float, default=20)
    parser.add_argument("--student-minutes", type=float, default=40)
    parser.add_argument("--every", type=float, default=5)
    parser.add_argument("--threads", type=int, default=1, help="per arm")
    parser.add_argument("--calib-minutes", type=float, default=1.5)
    for stage in STAGES:
        parser.add_argument(
            f"--{stage}-steps",
            type=int,
            help=f"the {stage} stage's step budget (default: calibrated); a replicate with "
            "another --seed passes the budgets of the run it repeats, and its clock then "
            f"stops the stage only at {REPLICATE_CLOCK}x its minutes",
        )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed_everything of both stages: mask draws, crops, sampling order and the "
        "predictor's and decoder's initialisation; the encoders keep the recipe's init_seed",
    )
    parser.add_argument(
        "--init-seed",
        type=int,
        help="init_seed of the encoder each stage trains (default: the recipe's, 1 for the "
        "stage-1 teacher and 0 for the student); a replicate varies it with --seed",
    )
    parser.add_argument("--seeds", default="[0, 1, 2, 3, 4]")
    parser.add_argument("--work", default="runs/bench_real")
    parser.add_argument("--out", default=str(results_dir(__file__)))
    parser.add_argument(
        "--stage",
        choices=["all", "teacher", "student", "probe", "report", "seeds"],
        default="all",
    )
    parser.add_argument(
        "--replicates",
        nargs="+",
        default=[],
        help="with --stage seeds: the --out folders of runs with different --seed",
    )
    ns = parser.parse_args()
    work, out = ROOT / ns.work, ROOT / ns.out
    if ns.stage == "seeds":
        if not ns.replicates:
            raise SystemExit("--stage seeds needs --replicates: the --out folders of the runs")
        replicates(ns.replicates, out)
        return
    if ns.stage in ("all", "teacher"):
        train("teacher", ns.teacher_minutes, ns, work)
    if ns.stage in ("all", "student"):
        train("student", ns.student_minutes, ns, work)
    if ns.stage in ("all", "probe"):
        probe(work, ns)
    if ns.stage in ("all", "probe", "report"):
        report(work, out, ns)


if __name__ == "__main__":
    main()
