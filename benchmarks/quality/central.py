"""The paper's three questions on real scans, at a small CPU scale, in resumable chunks:
SALT against EMA I-JEPA, the SALT student against its stage-1 teacher, USrc against plain
masks.

Arms, each training the same student (ViT width 192, depth 4, 128 px) with the same
predictor (the SALT recipe's one-pass predictor, width 96, depth 2, 4 heads) on the same
frames (``results/quality/central/small_cpu*.yaml`` on top of the recipes):

- ``salt_usrc``: a stage-1 MAE teacher, then a SALT student, USrc masks in both stages;
- ``salt_plain``: the same with plain masks;
- ``ema_usrc``: I-JEPA with an EMA target encoder (its recipe's loss, target norm and
  schedule; ``ema_ijepa.yaml``), USrc masks; its export is the target encoder.

**Compute.** Every arm gets ``--minutes`` of wall clock: a SALT arm spends
``--teacher-minutes`` of them on stage 1 and the rest on its student; the EMA arm trains
for all of them and is also probed at its snapshot nearest the SALT student's stage-2
minutes. Exactly two runs share the 2 cores at any time, one thread each (two slots).
Lightning's clock stops every run at its minutes, so the arms train for the same time;
the step count that sets each schedule's length comes from a calibration at the start
(steps per minute with two runs going). Calibration runs a little fast (the first
teacher runs made 86 % of its rate), so schedules end a little past the clock, in their
last, small learning rates.

**Tuning, on seed 0 and validation F1 only.** Each SALT arm's student learning rate and
the EMA arm's learning rate from three values (the recipe's batch-256 rate times 1/16, 1/4
and 1), then the EMA momentum schedule from three at the chosen rate. The choice is the
final snapshot's validation macro F1, averaged over the tasks. Test F1 is never read for
a choice: every comparison uses each run's final snapshot (and the EMA arm's stage-2-time
snapshot), fixed before any run.

**Seeds.** Pretraining seeds 0 to ``--seeds - 1``; each seed also seeds the encoders'
initial weights. Random init is probed with as many init seeds.

**Chunks.** ``--hours`` bounds one call: it starts no job that would not finish in time,
waits for the ones running, writes the report and stops. Run the same command again to
go on; a job cut short (no ``DONE`` in its folder) is run again from its start. The
report is rewritten after every probe, so a partial run still reports.

    python -m benchmarks.quality.central --manifest M --shards S --tasks T1 T2 --hours 2
    python -m benchmarks.quality.central --report-only   # the tables from what is done
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from benchmarks.common import record_env, results_dir

ROOT = Path(__file__).resolve().parents[2]
HERE = results_dir(__file__)
RECIPE = ROOT / "experiments/recipe"
ARMS = ("salt_usrc", "salt_plain", "ema_usrc")
#: the recipes' batch-256 learning rates; the grid is each times these factors
SALT_LR, EMA_LR = 6.25e-4, 1.25e-4
LR_FACTORS = (1 / 16, 1 / 4, 1.0)
#: EMA momentum schedules (start, end), I-JEPA's in the middle
MOMENTA = ((0.99, 1.0), (0.996, 1.0), (0.999, 1.0))
DEFAULT_MOMENTUM = 1
#: a probe job's planning estimate (minutes), for the chunk's time bound
PROBE_MINUTES = 4.0


@dataclass
class Job:
    """One process: a training run, a probe of a run's snapshots, or a calibration."""

    name: str
    kind: str  # calib | teacher | student | ema | probe | random
    minutes: float
    deps: list[str] = field(default_factory=list)
    args: dict = field(default_factory=dict)


# ---------------------------------------------------------------- state on disk


def job_dir(work: Path, name: str) -> Path:
    return work / "jobs" / name


def done(work: Path, name: str) -> bool:
    return (job_dir(work, name) / "DONE").exists()


def decisions(work: Path) -> dict:
    path = work / "decisions.json"
    return json.loads(path.read_text()) if path.exists() else {}


def save_decision(work: Path, key: str, value: object, why: dict) -> None:
    state = decisions(work)
    state[key] = {"value": value, "validation_f1": why}
    (work / "decisions.json").write_text(json.dumps(state, indent=1) + "\n")


# ---------------------------------------------------------------- the plan


def lr_of(arm: str, i: int) -> float:
    return (EMA_LR if arm == "ema_usrc" else SALT_LR) * LR_FACTORS[i]


def plan(ns: argparse.Namespace, work: Path) -> list[Job]:
    """Every job in the order it should run; jobs for seeds past 0 exist once tuning has
    chosen their settings."""
    T, B, CALIB_MINUTES = ns.teacher_minutes, ns.minutes, ns.calib_minutes
    S = B - T
    state = decisions(work)
    jobs = [
        Job("calib_teacher_usrc", "calib", CALIB_MINUTES, [],
            {"of": "teacher", "arm": "salt_usrc"}),
        Job("calib_teacher_plain", "calib", CALIB_MINUTES, [],
            {"of": "teacher", "arm": "salt_plain"}),
        Job("calib_ema_a", "calib", CALIB_MINUTES, args={"of": "ema", "arm": "ema_usrc"}),
        Job("calib_ema_b", "calib", CALIB_MINUTES, args={"of": "ema", "arm": "ema_usrc"}),
        Job("calib_student_usrc", "calib", CALIB_MINUTES, ["calib_teacher_usrc"],
            {"of": "student", "arm": "salt_usrc"}),
        Job("calib_student_plain", "calib", CALIB_MINUTES, ["calib_teacher_plain"],
            {"of": "student", "arm": "salt_plain"}),
    ]  # fmt: skip
    calibrated = [j.name for j in jobs]
    for arm in ("salt_usrc", "salt_plain"):
        jobs.append(Job(f"teacher_{arm}_s0", "teacher", T, calibrated, {"arm": arm, "seed": 0}))
    # tuning on seed 0 first (so that seed 0 reports early): three learning rates per arm,
    # then the EMA momentum; the other seeds' teachers after it
    for i in range(len(LR_FACTORS)):
        for arm in ("salt_usrc", "salt_plain"):
            jobs.append(Job(f"student_{arm}_s0_lr{i}", "student", S, [f"teacher_{arm}_s0"],
                            {"arm": arm, "seed": 0, "lr": i}))  # fmt: skip
        jobs.append(Job(f"ema_s0_lr{i}_m{DEFAULT_MOMENTUM}", "ema", B, calibrated,
                        {"arm": "ema_usrc", "seed": 0, "lr": i,
                         "m": DEFAULT_MOMENTUM}))  # fmt: skip
    lr_ema = state.get("lr_ema_usrc", {}).get("value")
    if lr_ema is not None:
        for j in range(len(MOMENTA)):
            if j != DEFAULT_MOMENTUM:
                jobs.append(Job(f"ema_s0_lr{lr_ema}_m{j}", "ema", B, calibrated,
                                {"arm": "ema_usrc", "seed": 0, "lr": lr_ema, "m": j}))  # fmt: skip
    m_ema = state.get("m_ema_usrc", {}).get("value")
    for seed in range(1, ns.seeds):
        for arm in ("salt_usrc", "salt_plain"):
            jobs.append(Job(f"teacher_{arm}_s{seed}", "teacher", T, calibrated,
                            {"arm": arm, "seed": seed}))  # fmt: skip
    for seed in range(1, ns.seeds):
        for arm in ("salt_usrc", "salt_plain"):
            lr = state.get(f"lr_{arm}", {}).get("value")
            if lr is not None:
                jobs.append(Job(f"student_{arm}_s{seed}_lr{lr}", "student", S,
                                [f"teacher_{arm}_s{seed}"],
                                {"arm": arm, "seed": seed, "lr": lr}))  # fmt: skip
        if lr_ema is not None and m_ema is not None:
            jobs.append(Job(f"ema_s{seed}_lr{lr_ema}_m{m_ema}", "ema", B, calibrated,
                            {"arm": "ema_usrc", "seed": seed, "lr": lr_ema,
                             "m": m_ema}))  # fmt: skip
    for seed in range(ns.seeds):
        jobs.append(Job(f"random_s{seed}", "random", PROBE_MINUTES, calibrated, {"seed": seed}))
    runs = [j for j in jobs if j.kind in ("teacher", "student", "ema")]
    probes = [
        Job(f"probe_{j.name}", "probe", PROBE_MINUTES, [j.name], {"run": j.name}) for j in runs
    ]
    # a run's probe goes right after it, so that tuning decisions come early
    ordered: list[Job] = []
    for job in jobs:
        ordered.append(job)
        ordered += [p for p in probes if p.args["run"] == job.name]
    return ordered


# ---------------------------------------------------------------- commands


def _callbacks(out: Path, every: float | None) -> str:
    export = {"path": str(out / "encoder.safetensors")}
    if every:
        export["every_minutes"] = every
    return json.dumps([{"class_path": "usjepa.callbacks.ExportEncoder", "init_args": export}])


def _clock(minutes: float) -> str:
    seconds = int(minutes * 60)
    return f"00:{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def train_command(job: Job, ns: argparse.Namespace, work: Path, steps: int, minutes: float,
                  every: float | None) -> list[str]:  # fmt: skip
    """The ``usjepa pretrain`` call of a training job (or its calibration)."""
    out = job_dir(work, job.name)
    a = job.args
    stage = a.get("of", job.kind)
    arm = a["arm"]
    base = [sys.executable, "-m", "usjepa", "pretrain"]
    if stage == "teacher":
        configs = [RECIPE / "teacher_stage1_vitb16.yaml", HERE / "small_cpu_teacher.yaml"]
    elif stage == "student":
        configs = [RECIPE / "salt_vitb16.yaml", RECIPE / "own_teacher.yaml",
                   HERE / "small_cpu.yaml", HERE / "small_cpu_frozen_teacher.yaml"]  # fmt: skip
    else:
        configs = [RECIPE / "salt_vitb16.yaml", RECIPE / "ema_ijepa.yaml", HERE / "small_cpu.yaml"]
    for c in configs:
        base += ["--config", str(c)]
    seed = a.get("seed", 0)
    base += [
        "--data.init_args.manifest", ns.manifest,
        "--data.init_args.shards", ns.shards,
        "--data.init_args.root", ns.root,
        "--data.init_args.test_index", json.dumps(ns.tasks),
        "--data.init_args.scan_region", "false" if arm == "salt_plain" else "true",
        "--trainer.default_root_dir", str(out),
        "--trainer.max_steps", str(steps),
        "--trainer.max_time", _clock(minutes),
        "--trainer.callbacks", _callbacks(out, every),
        "--seed_everything", str(seed),
    ]  # fmt: skip
    trained = "encoder" if stage == "teacher" else "student"
    base += [f"--model.init_args.{trained}.init_args.init_seed", str(seed)]
    if stage == "student":
        teacher = (
            job_dir(work, f"calib_teacher_{arm.removeprefix('salt_')}")
            if job.kind == "calib"
            else job_dir(work, f"teacher_{arm}_s{seed}")
        ) / "encoder.safetensors"
        base += ["--model.init_args.teacher.init_args.checkpoint", str(teacher)]
    if stage in ("student", "ema") and "lr" in a:
        base += ["--model.init_args.optimizer.init_args.lr", str(lr_of(arm, a["lr"]))]
    if stage == "ema" and "m" in a:
        base += ["--model.init_args.ema_momentum", json.dumps(list(MOMENTA[a["m"]]))]
    return base


def steps_per_minute(work: Path, of: str, arm: str) -> float:
    """Steps per minute of this stage and arm with two runs going (the slower of its
    calibration runs), so that each arm's steps fill its own minutes; Lightning's clock
    counts training only, so start-up is not in it."""
    rates = []
    for path in (work / "jobs").glob("calib_*/DONE"):
        info = json.loads(path.read_text())
        if info.get("of") == of and info.get("arm") == arm:
            rates.append(info["steps"] / (info["train_seconds"] / 60.0))
    if not rates:
        raise RuntimeError(f"no calibration for {of} {arm}")
    return min(rates)


def snapshots(work: Path, run: str) -> list[tuple[str, float]]:
    """``(export path, training minutes)`` of a run's snapshots and its final export."""
    out = job_dir(work, run)
    final = json.loads((out / "encoder.json").read_text())["train_seconds"]
    found = []
    for snap in sorted(out.glob("encoder*.safetensors")):
        seconds = json.loads(snap.with_suffix(".json").read_text())["train_seconds"]
        if snap.stem != "encoder" and final - seconds < 10:
            continue  # a snapshot taken as training ended: the final export itself
        found.append((str(snap), seconds / 60.0))
    return found


def probe_command(job: Job, ns: argparse.Namespace, work: Path) -> list[str]:
    zoo = "usjepa.models.zoo.ZooEncoder"
    encoders = {}
    if job.kind == "random":
        encoders[f"random_s{job.args['seed']}"] = {
            "class_path": "usjepa.models.ViTEncoder",
            "init_args": {"img_size": 128, "patch_size": 16, "in_chans": 1, "embed_dim": 192,
                          "depth": 4, "num_heads": 3, "init_seed": 1000 + job.args["seed"]},
        }  # fmt: skip
    else:
        for path, _ in snapshots(work, job.args["run"]):
            name = f"{job.args['run']}/{Path(path).stem}"
            encoders[name] = {
                "class_path": zoo,
                "init_args": {"name": "usjepa", "checkpoint": path},
            }
    tasks = [
        {"class_path": "usjepa.data.ProbeDataModule", "init_args": {"root": t, "img_size": 128}}
        for t in ns.tasks
    ]
    return [
        sys.executable, "-m", "usjepa", "probe",
        "--config", str(ROOT / "experiments/probe/demo.yaml"),
        "--task", "null",
        "--tasks", json.dumps(tasks),
        "--encoders", json.dumps(encoders),
        "--protocol.seeds", "[0]",
        "--cache_dir", "null",
        "--save_predictions", "true",
        "--out_dir", str(job_dir(work, job.name)),
    ]  # fmt: skip


# ---------------------------------------------------------------- running


def start(job: Job, ns: argparse.Namespace, work: Path) -> subprocess.Popen:
    out = job_dir(work, job.name)
    if out.exists():  # cut short in an earlier chunk: from its start
        shutil.rmtree(out)
    out.mkdir(parents=True)
    if job.kind == "calib":
        job.args["calib_minutes"] = ns.calib_minutes
        cmd = train_command(job, ns, work, 1_000_000, ns.calib_minutes, None)
    elif job.kind in ("teacher", "student", "ema"):
        of = "ema" if job.kind == "ema" else job.kind
        steps = max(10, int(steps_per_minute(work, of, job.args["arm"]) * job.minutes))
        job.args["steps"] = steps
        cmd = train_command(job, ns, work, steps, job.minutes, ns.every)
    else:
        cmd = probe_command(job, ns, work)
    (out / "command.json").write_text(json.dumps(cmd, indent=1) + "\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with open(out / "run.log", "w") as log:  # the child keeps its own handle
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    print(f"[central] start {job.name} ({job.minutes:.1f} min planned)", flush=True)
    return proc


def finish(job: Job, proc: subprocess.Popen, started: float, work: Path) -> bool:
    out = job_dir(work, job.name)
    info = {**job.args, "kind": job.kind, "rc": proc.returncode,
            "wall_seconds": time.perf_counter() - started}  # fmt: skip
    if proc.returncode != 0:
        (out / "FAILED").write_text(json.dumps(info, indent=1) + "\n")
        print(f"[central] {job.name} FAILED (exit {proc.returncode}); see {out / 'run.log'}")
        return False
    if job.kind == "calib":  # steps and training seconds, from the export's record
        meta = json.loads((out / "encoder.json").read_text())
        info["steps"], info["train_seconds"] = meta["trained_steps"], meta["train_seconds"]
    elif job.kind in ("teacher", "student", "ema"):
        for c in out.rglob("*.ckpt"):  # the exports are what the probes read
            c.unlink()
    (out / "DONE").write_text(json.dumps(info, indent=1) + "\n")
    print(f"[central] done {job.name} in {info['wall_seconds'] / 60:.1f} min", flush=True)
    return True


def decide(work: Path, ns: argparse.Namespace) -> None:
    """Tuning choices whose runs are all probed: the final snapshot's validation F1,
    averaged over the tasks; never test F1."""
    state = decisions(work)

    def val_f1(run: str) -> float | None:
        path = job_dir(work, f"probe_{run}") / "probe_per_seed.csv"
        if not done(work, f"probe_{run}"):
            return None
        rows = pd.read_csv(path)
        final = rows[rows["model"] == f"{run}/encoder"]
        return float(final["val_macro_f1"].mean()) * 100

    for arm in ("salt_usrc", "salt_plain", "ema_usrc"):
        key = f"lr_{arm}"
        if key in state:
            continue
        runs = {
            i: (
                f"student_{arm}_s0_lr{i}"
                if arm != "ema_usrc"
                else f"ema_s0_lr{i}_m{DEFAULT_MOMENTUM}"
            )
            for i in range(len(LR_FACTORS))
        }
        scores = {i: val_f1(r) for i, r in runs.items()}
        if all(s is not None for s in scores.values()):
            best = max(scores, key=lambda i: scores[i])
            save_decision(
                work, key, best, {f"lr {lr_of(arm, i):.3g}": s for i, s in scores.items()}
            )
            print(f"[central] {key}: {lr_of(arm, best):.3g} (validation F1 {scores})")
    state = decisions(work)
    if "lr_ema_usrc" in state and "m_ema_usrc" not in state:
        lr = state["lr_ema_usrc"]["value"]
        scores = {j: val_f1(f"ema_s0_lr{lr}_m{j}") for j in range(len(MOMENTA))}
        if all(s is not None for s in scores.values()):
            best = max(scores, key=lambda j: scores[j])
            save_decision(work, "m_ema_usrc", best, {str(MOMENTA[j]): s for j, s in scores.items()})
            print(f"[central] m_ema_usrc: {MOMENTA[best]} (validation F1 {scores})")


def run_chunk(ns: argparse.Namespace, work: Path) -> int:
    """Run jobs two at a time until all are done or the chunk's hours are spent."""
    deadline = time.perf_counter() + ns.hours * 3600
    running: dict[str, tuple[Job, subprocess.Popen, float]] = {}
    failed = {p.parent.name for p in (work / "jobs").glob("*/FAILED")}
    for name in failed:  # a failed job runs again in the next chunk
        shutil.rmtree(job_dir(work, name))
    failed = set()
    while True:
        decide(work, ns)
        jobs = plan(ns, work)
        left = (deadline - time.perf_counter()) / 60
        ready = [
            j for j in jobs
            if not done(work, j.name) and j.name not in running and j.name not in failed
            and all(done(work, d) for d in j.deps) and j.minutes + 1.5 <= left
        ]  # fmt: skip
        while ready and len(running) < ns.slots:
            job = ready.pop(0)
            running[job.name] = (job, start(job, ns, work), time.perf_counter())
        if not running:
            pending = [j.name for j in jobs if not done(work, j.name)]
            print(
                f"[central] chunk ends: {len(pending)} jobs left"
                + (f", failed: {sorted(failed)}" if failed else "")
            )
            return 1 if failed else 0
        time.sleep(5)
        for name, (job, proc, started) in list(running.items()):
            if proc.poll() is not None:
                del running[name]
                if not finish(job, proc, started, work):
                    failed.add(name)
                elif job.kind in ("probe", "random"):
                    report(ns, work)


# ---------------------------------------------------------------- the report


def gather(work: Path, ns: argparse.Namespace) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-snapshot rows (arm, stage, seed, minutes, task, validation and test F1) and the
    test predictions of the snapshots the comparisons use, relabelled by comparison row."""
    state = decisions(work)
    rows, preds = [], []
    for path in sorted((work / "jobs").glob("probe_*/DONE")):
        folder = path.parent
        run = folder.name.removeprefix("probe_")
        info = json.loads((job_dir(work, run) / "DONE").read_text())
        kind, arm, seed = info["kind"], info["arm"], info["seed"]
        offset = 0.0
        if kind == "student":
            teacher = snapshots(work, f"teacher_{arm}_s{seed}")
            offset = max(m for _, m in teacher)
        tuned = True
        if kind == "student":
            tuned = state.get(f"lr_{arm}", {}).get("value") == info["lr"]
        elif kind == "ema":
            tuned = (
                state.get("lr_ema_usrc", {}).get("value"),
                state.get("m_ema_usrc", {}).get("value"),
            ) == (info["lr"], info["m"])
        per_seed = pd.read_csv(folder / "probe_per_seed.csv")
        minutes = {f"{run}/{Path(p).stem}": offset + m for p, m in snapshots(work, run)}
        # the run's schedule (steps from the calibration) and what the clock let it train:
        # a fast sitting ends the schedule before the clock, a slow one is cut by it
        final = json.loads((job_dir(work, run) / "encoder.json").read_text())
        for r in per_seed.itertuples():
            rows.append({
                "run": run, "arm": arm, "stage": kind, "seed": seed, "lr": info.get("lr"),
                "momentum": info.get("m"), "tuned": tuned, "snapshot": r.model.split("/", 1)[1],
                "minutes": minutes[r.model], "planned_steps": info["steps"],
                "trained_steps": final["trained_steps"],
                "train_minutes": final["train_seconds"] / 60.0, "task": r.task,
                "val_macro_f1": 100 * r.val_macro_f1, "test_macro_f1": 100 * r.macro_f1,
            })  # fmt: skip
        p = pd.read_csv(folder / "probe_predictions.csv.gz")
        p["run"], p["arm"], p["stage"], p["pretrain_seed"], p["tuned"] = run, arm, kind, seed, tuned
        p["minutes"] = p["model"].map(minutes)
        preds.append(p)
    for path in sorted((work / "jobs").glob("random_s*/DONE")):
        folder = path.parent
        seed = int(folder.name.removeprefix("random_s"))
        for r in pd.read_csv(folder / "probe_per_seed.csv").itertuples():
            rows.append({"run": folder.name, "arm": "random_init", "stage": "random", "seed": seed,
                         "tuned": True, "snapshot": "init", "minutes": 0.0, "task": r.task,
                         "val_macro_f1": 100 * r.val_macro_f1,
                         "test_macro_f1": 100 * r.macro_f1})  # fmt: skip
        p = pd.read_csv(folder / "probe_predictions.csv.gz")
        p["run"], p["arm"], p["stage"], p["pretrain_seed"] = (
            folder.name,
            "random_init",
            "random",
            seed,
        )
        p["tuned"], p["minutes"] = True, 0.0
        preds.append(p)
    return pd.DataFrame(rows), (pd.concat(preds, ignore_index=True) if preds else pd.DataFrame())


#: the comparison rows: label -> (arm, stage, which snapshot)
ROWS = {
    "SALT USrc student": ("salt_usrc", "student", "final"),
    "SALT USrc teacher (stage 1)": ("salt_usrc", "teacher", "final"),
    "SALT plain student": ("salt_plain", "student", "final"),
    "SALT plain teacher (stage 1)": ("salt_plain", "teacher", "final"),
    "EMA I-JEPA USrc, SALT's total time": ("ema_usrc", "ema", "final"),
    "EMA I-JEPA USrc, SALT's stage-2 time": ("ema_usrc", "ema", "stage2"),
    "random init": ("random_init", "random", "final"),
}
PAIRS = [
    ("SALT USrc student", "EMA I-JEPA USrc, SALT's total time"),
    ("SALT USrc student", "EMA I-JEPA USrc, SALT's stage-2 time"),
    ("SALT USrc student", "SALT USrc teacher (stage 1)"),
    ("SALT plain student", "SALT plain teacher (stage 1)"),
    ("SALT USrc student", "SALT plain student"),
    ("SALT USrc teacher (stage 1)", "SALT plain teacher (stage 1)"),
    ("SALT USrc student", "random init"),
    ("EMA I-JEPA USrc, SALT's total time", "random init"),
]


def pick(preds: pd.DataFrame, ns: argparse.Namespace) -> pd.DataFrame:
    """The predictions of each comparison row's snapshot, fixed in advance: a run's final
    export, or the EMA snapshot nearest the SALT student's stage-2 minutes."""
    out = []
    stage2 = ns.minutes - ns.teacher_minutes
    for label, (arm, stage, which) in ROWS.items():
        part = preds[(preds.arm == arm) & (preds.stage == stage) & preds.tuned]
        for seed, one in part.groupby("pretrain_seed"):
            if which == "final":
                chosen = one[one.model.str.endswith("/encoder") | (one.stage == "random")]
            else:
                snaps = one.drop_duplicates("model")
                best = snaps.iloc[(snaps.minutes - stage2).abs().argmin()].model
                chosen = one[one.model == best]
            out.append(chosen.assign(model=label, seed=seed))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def report(ns: argparse.Namespace, work: Path) -> None:
    from usjepa.eval import macro_f1, paired_bootstrap

    out = Path(ns.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, preds = gather(work, ns)
    if rows.empty:
        return
    rows.to_csv(out / "per_snapshot.csv", index=False)
    picked = pick(preds, ns)
    lines = [
        "# SALT against EMA I-JEPA, student against teacher, USrc against plain masks",
        "",
        f"Real scans, CPU scale: every arm {ns.minutes:g} minutes of wall clock (SALT: "
        f"{ns.teacher_minutes:g} on its stage-1 teacher, the rest on its student), "
        f"pretraining seeds so far: {sorted(rows.seed.unique().tolist())}. Linear-probe "
        "macro F1 (%) on each task's test split at the snapshot fixed in advance (a run's "
        "final export; for the EMA arm also the snapshot nearest the student's stage-2 "
        "minutes). Settings in `README.md`; tuning choices in `decisions.json`.",
        "",
    ]
    summary, diffs = [], []
    # every interval in the report is one test: at 95 % each, about one in twenty leaves
    # out zero by chance; the adjusted interval (Bonferroni over all of them) is the one
    # that holds for the report as a whole
    tests = len(PAIRS) * (picked.task.nunique() if not picked.empty else 0)
    strict = 1.0 - 0.05 / max(tests, 1)
    for task, tp in picked.groupby("task") if not picked.empty else []:
        f1 = {}
        for (label, seed), part in tp.groupby(["model", "seed"]):
            one = part.sort_values("test_index")
            f1.setdefault(label, {})[seed] = float(
                macro_f1(one.label.to_numpy(), one.prediction.to_numpy())[0]
            )
        for label in ROWS:
            if label in f1:
                v = pd.Series(f1[label])
                summary.append({"task": task, "row": label, "seeds": len(v), "mean": v.mean(),
                                "std": v.std(ddof=1) if len(v) > 1 else float("nan"),
                                "per_seed": " ".join(f"{x:.1f}" for x in v)})  # fmt: skip
        for a, b in PAIRS:
            if a in f1 and b in f1 and set(f1[a]) & set(f1[b]):
                both = tp[tp.model.isin([a, b])]
                d = paired_bootstrap(both, a, b, resamples=ns.resamples)
                # far tails need more draws: 20,000 leave about 30 beyond a 0.3 % cut
                adj = paired_bootstrap(both, a, b, resamples=max(ns.resamples, 20_000),
                                       level=strict)  # fmt: skip
                diffs.append({"task": task, **d.row(), "low_adjusted": adj.low,
                              "high_adjusted": adj.high, "level_adjusted": strict,
                              "separates_adjusted": adj.separates})  # fmt: skip
    summary_df, diffs_df = pd.DataFrame(summary), pd.DataFrame(diffs)
    summary_df.to_csv(out / "summary.csv", index=False)
    diffs_df.to_csv(out / "paired_differences.csv", index=False)
    if not summary_df.empty:
        for task, part in summary_df.groupby("task"):
            lines += [
                f"## {task}",
                "",
                "| row | seeds | macro F1 | std | per seed |",
                "|---|---|---|---|---|",
            ]
            lines += [
                f"| {r.row} | {r.seeds} | {r.mean:.1f} | "
                f"{'-' if pd.isna(r.std) else f'{r.std:.1f}'} | {r.per_seed} |"
                for r in part.itertuples()
            ]
            lines.append("")
            dp = diffs_df[diffs_df.task == task] if not diffs_df.empty else diffs_df
            if not dp.empty:
                lines += ["Paired differences (a minus b, mean over seeds), 95 % interval from "
                          "resampling seeds and test images together. The report holds "
                          f"{tests} such intervals, so about one in twenty would leave out "
                          "zero by chance alone; the adjusted interval (Bonferroni, "
                          f"{strict:.2%} each) holds for all of them together:", "",
                          "| a | b | difference | 95 % interval | separates from zero "
                          "| adjusted interval | separates, adjusted | a ahead in | per seed |",
                          "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
                dp = dp.rename(columns={"low_95%": "low", "high_95%": "high"})
                for r in dp.itertuples():
                    lines.append(
                        f"| {r.a} | {r.b} | {r.difference:+.1f} | [{r.low:+.1f}, {r.high:+.1f}] | "
                        f"{'yes' if r.separates_from_zero else 'no'} | "
                        f"[{r.low_adjusted:+.1f}, {r.high_adjusted:+.1f}] | "
                        f"{'yes' if r.separates_adjusted else 'no'} | "
                        f"{r.a_ahead_in_seeds} of {r.seeds} | {r.per_seed} |"
                    )
                lines.append("")
    tuning = decisions(work)
    if tuning:
        (out / "decisions.json").write_text(json.dumps(tuning, indent=1) + "\n")
        lines += ["## Tuning (seed 0, validation F1 of the final snapshot, mean over tasks)", ""]
        for key, d in tuning.items():
            lines.append(
                f"- `{key}`: chose {d['value']}; "
                + ", ".join(f"{k} {v:.1f}" for k, v in d["validation_f1"].items())
            )
        lines.append("")
    plot(rows, out / "f1_vs_minutes.png")
    write_commands(work, ns, out / "commands.csv")
    record_env(out / "central.md")
    (out / "central.md").write_text("\n".join(lines) + "\n")


def write_commands(work: Path, ns: argparse.Namespace, path: Path) -> None:
    """``commands.csv``: every finished job's exact command line (job, kind, arm, seed,
    command), run from the repository root; the data folders written as ``$BUILT`` (the
    folder that ``run.sh`` builds them in), the interpreter as ``python``."""
    data = [Path(p).resolve() for p in (ns.manifest, ns.shards, ns.root, *ns.tasks)]
    built = os.path.commonpath([str(p) for p in data])
    records = []
    for folder in sorted((work / "jobs").glob("*")):
        if not (folder / "DONE").exists() or not (folder / "command.json").exists():
            continue
        cmd = json.loads((folder / "command.json").read_text())
        if cmd and "python" in Path(cmd[0]).name:
            cmd = ["python", *cmd[1:]]
        line = shlex.join(cmd)
        line = line.replace(f"{ROOT}/", "").replace(built, "$BUILT")
        info = json.loads((folder / "DONE").read_text() or "{}")
        records.append({"job": folder.name, "kind": info.get("kind", ""),
                        "arm": info.get("arm", ""), "seed": info.get("seed", ""),
                        "command": line})  # fmt: skip
    pd.DataFrame(records).to_csv(path, index=False)


def plot(rows: pd.DataFrame, path: Path) -> None:
    """Test F1 against cumulative minutes per arm and task, mean over seeds (tuned runs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted(rows.task.unique())
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4), squeeze=False)
    styles = {("salt_usrc", "teacher"): ("C0", ":"), ("salt_usrc", "student"): ("C0", "-"),
              ("salt_plain", "teacher"): ("C1", ":"), ("salt_plain", "student"): ("C1", "-"),
              ("ema_usrc", "ema"): ("C2", "-")}  # fmt: skip
    for ax, task in zip(axes[0], tasks):
        part = rows[(rows.task == task) & rows.tuned]
        for (arm, stage), (color, ls) in styles.items():
            curve = part[(part.arm == arm) & (part.stage == stage)]
            if curve.empty:
                continue
            curve = (
                curve.assign(m=curve.minutes.round(0))
                .groupby("m")
                .test_macro_f1.agg(["mean", "std"])
            )
            ax.errorbar(curve.index, curve["mean"], yerr=curve["std"].fillna(0), color=color, ls=ls,
                        marker="o", ms=3, capsize=2, label=f"{arm} {stage}")  # fmt: skip
        rnd = part[part.arm == "random_init"].test_macro_f1
        if len(rnd):
            ax.axhline(rnd.mean(), color="grey", ls="--", label="random init")
        ax.set_title(task)
        ax.set_xlabel("wall-clock minutes of the arm")
        ax.set_ylabel("test macro F1 (%)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--manifest", default="/work/realdata/built/central/manifest.parquet")
    parser.add_argument("--shards", default="/work/realdata/built/central/shards")
    parser.add_argument("--root", default="/work/realdata/built/corpus_real5", help="frames")
    parser.add_argument("--tasks", nargs="+",
                        default=["/work/realdata/built/tasks/busi",
                                 "/work/realdata/built/tasks/pocus"])  # fmt: skip
    parser.add_argument("--minutes", type=float, default=24.0, help="wall clock per arm")
    parser.add_argument("--teacher-minutes", type=float, default=8.0)
    parser.add_argument("--every", type=float, default=4.0, help="snapshot every (minutes)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--calib-minutes", type=float, default=1.5)
    parser.add_argument("--slots", type=int, default=2, help="runs at once, one thread each")
    parser.add_argument("--hours", type=float, default=1.0, help="this chunk's bound")
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--work", default="runs/central")
    parser.add_argument("--out", default=str(HERE))
    parser.add_argument("--report-only", action="store_true")
    ns = parser.parse_args()
    work = Path(ns.work).resolve()
    (work / "jobs").mkdir(parents=True, exist_ok=True)
    settings = work / "settings.json"
    keys = ("manifest", "shards", "root", "tasks", "minutes", "teacher_minutes", "every", "seeds")
    fixed = {k: getattr(ns, k) for k in keys}
    if settings.exists() and json.loads(settings.read_text()) != fixed:
        sys.exit(
            f"central: {work} was started with other settings ({settings}); give the same "
            "ones or another --work"
        )
    settings.write_text(json.dumps(fixed, indent=1) + "\n")
    if ns.report_only:
        report(ns, work)
        return
    rc = run_chunk(ns, work)
    report(ns, work)
    sys.exit(rc)


if __name__ == "__main__":
    main()
