"""The three-arm experiment's bookkeeping (``benchmarks/quality/central.py``) on a work
folder of fake finished jobs: tuning reads validation F1 only, seeds past 0 wait for it,
and the report pairs the runs it should."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.quality import central

TASK = "busi"
LABELS = np.arange(60) % 3


def _ns(tmp: Path) -> argparse.Namespace:
    return argparse.Namespace(
        teacher_minutes=8.0, minutes=24.0, calib_minutes=1.5, seeds=2, resamples=200,
        out=str(tmp / "out"), every=4.0, manifest=str(tmp / "built/central/manifest.parquet"),
        shards=str(tmp / "built/central/shards"), root=str(tmp / "built/corpus"),
        tasks=[str(tmp / "built/tasks/busi")],
    )  # fmt: skip


def _run(work: Path, name: str, info: dict, minutes: list[float]) -> None:
    """A finished training run with snapshots at ``minutes`` (the last is the final)."""
    folder = central.job_dir(work, name)
    folder.mkdir(parents=True)
    # a schedule of 100 steps per minute, cut by the clock at 90
    (folder / "DONE").write_text(json.dumps({**info, "steps": 100 * minutes[-1]}))
    for m in minutes[:-1]:
        (folder / f"encoder_t{m:05.1f}.json").write_text(json.dumps({"train_seconds": m * 60}))
        (folder / f"encoder_t{m:05.1f}.safetensors").write_bytes(b"")
    final = {"train_seconds": minutes[-1] * 60, "trained_steps": 90 * minutes[-1]}
    (folder / "encoder.json").write_text(json.dumps(final))
    built = work.parent / "built"
    command = [sys.executable, "-m", "usjepa", "pretrain", "--data.init_args.manifest",
               str(built / "central/manifest.parquet"), "--trainer.default_root_dir",
               str(central.ROOT / "runs/central/jobs" / name)]  # fmt: skip
    (folder / "command.json").write_text(json.dumps(command))
    (folder / "encoder.safetensors").write_bytes(b"")


def _probe(work: Path, run: str, models: list[str], val: float, accuracy: float, seed: int) -> None:
    """A finished probe: every model at validation F1 ``val`` and test predictions right
    with probability ``accuracy``."""
    folder = central.job_dir(work, f"probe_{run}" if not run.startswith("random") else run)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "DONE").write_text("{}")
    rng = np.random.default_rng(seed)
    rows, preds = [], []
    for model in models:
        pred = np.where(rng.random(60) < accuracy, LABELS, (LABELS + 1) % 3)
        f1 = float(central_f1(pred))
        rows.append({"model": model, "task": TASK, "val_macro_f1": val / 100, "macro_f1": f1 / 100})
        frame = {"model": model, "task": TASK, "fraction": 1.0, "seed": 0}
        frame |= {"test_index": np.arange(60), "label": LABELS, "prediction": pred}
        preds.append(pd.DataFrame(frame))
    pd.DataFrame(rows).to_csv(folder / "probe_per_seed.csv", index=False)
    pd.concat(preds).to_csv(folder / "probe_predictions.csv.gz", index=False)


def central_f1(pred: np.ndarray) -> float:
    from usjepa.eval import macro_f1

    return float(macro_f1(LABELS, pred)[0])


def test_tuning_reads_validation_only_and_later_seeds_wait_for_it(tmp_path: Path) -> None:
    ns, work = _ns(tmp_path), tmp_path / "work"
    names = {j.name for j in central.plan(ns, work)}
    assert "teacher_salt_usrc_s1" in names
    assert not any(n.startswith("student_salt_usrc_s1") for n in names)  # waits for tuning
    _run(work, "teacher_salt_usrc_s0", {"kind": "teacher", "arm": "salt_usrc", "seed": 0}, [4, 8])
    # validation prefers lr 1; test would have preferred lr 0
    for i, (val, acc) in enumerate([(50, 0.95), (70, 0.5), (60, 0.7)]):
        run = f"student_salt_usrc_s0_lr{i}"
        _run(work, run, {"kind": "student", "arm": "salt_usrc", "seed": 0, "lr": i}, [4, 8, 16])
        _probe(work, run, [f"{run}/encoder_t004.0", f"{run}/encoder_t008.0", f"{run}/encoder"],
               val, acc, seed=i)  # fmt: skip
    central.decide(work, ns)
    state = central.decisions(work)
    assert state["lr_salt_usrc"]["value"] == 1
    names = {j.name for j in central.plan(ns, work)}
    assert "student_salt_usrc_s1_lr1" in names and "student_salt_usrc_s1_lr0" not in names


def test_report_compares_final_snapshots_of_tuned_runs(tmp_path: Path) -> None:
    ns, work = _ns(tmp_path), tmp_path / "work"
    (work / "jobs").mkdir(parents=True)
    central.save_decision(work, "lr_salt_usrc", 0, {})
    central.save_decision(work, "lr_ema_usrc", 0, {})
    central.save_decision(work, "m_ema_usrc", 1, {})
    for seed in (0, 1):
        t = f"teacher_salt_usrc_s{seed}"
        _run(work, t, {"kind": "teacher", "arm": "salt_usrc", "seed": seed}, [4, 8])
        _probe(work, t, [f"{t}/encoder_t004.0", f"{t}/encoder"], 50, 0.5, seed=10 + seed)
        s = f"student_salt_usrc_s{seed}_lr0"
        _run(work, s, {"kind": "student", "arm": "salt_usrc", "seed": seed, "lr": 0}, [4, 16])
        _probe(work, s, [f"{s}/encoder_t004.0", f"{s}/encoder"], 60, 0.95, seed=20 + seed)
        e = f"ema_s{seed}_lr0_m1"
        _run(
            work, e, {"kind": "ema", "arm": "ema_usrc", "seed": seed, "lr": 0, "m": 1}, [8, 16, 24]
        )
        snaps = [f"{e}/encoder_t008.0", f"{e}/encoder_t016.0", f"{e}/encoder"]
        _probe(work, e, snaps, 55, 0.6, seed=30 + seed)
        _probe(work, f"random_s{seed}", [f"random_s{seed}"], 40, 0.34, seed=40 + seed)
    central.report(ns, work)
    out = Path(ns.out)
    summary = pd.read_csv(out / "summary.csv").set_index("row")
    assert summary.loc["SALT USrc student", "seeds"] == 2
    assert {"EMA I-JEPA USrc, SALT's stage-2 time", "random init"} <= set(summary.index)
    diffs = pd.read_csv(out / "paired_differences.csv")
    student_vs_teacher = diffs[
        (diffs.a == "SALT USrc student") & (diffs.b == "SALT USrc teacher (stage 1)")
    ]
    assert len(student_vs_teacher) == 1 and bool(student_vs_teacher.separates_from_zero.iloc[0])
    # every interval also comes adjusted for the report's number of intervals (8 pairs,
    # one task): wider than the 95 % one, and the strong difference still separates
    assert np.allclose(diffs.level_adjusted, 1 - 0.05 / 8)
    assert (diffs.low_adjusted <= diffs["low_95%"] + 1e-9).all()
    assert (diffs.high_adjusted >= diffs["high_95%"] - 1e-9).all()
    assert (diffs.high_adjusted - diffs.low_adjusted > diffs["high_95%"] - diffs["low_95%"]).any()
    assert bool(student_vs_teacher.separates_adjusted.iloc[0])
    # each arm's runs with the exact command that reproduces them, from the repository
    # root, the data folders as $BUILT
    commands = pd.read_csv(out / "commands.csv").set_index("job")
    line = commands.loc["student_salt_usrc_s1_lr0", "command"]
    assert line == (
        "python -m usjepa pretrain --data.init_args.manifest $BUILT/central/manifest.parquet "
        "--trainer.default_root_dir runs/central/jobs/student_salt_usrc_s1_lr0"
    )
    assert commands.loc["ema_s0_lr0_m1", "arm"] == "ema_usrc"
    per_snapshot = pd.read_csv(out / "per_snapshot.csv")
    # a student's minutes continue from its teacher's final minutes
    student = per_snapshot[per_snapshot.stage == "student"]
    assert sorted(student.minutes.unique()) == [12.0, 24.0]
    # each row says what its run's schedule planned and what the clock let it train
    assert set(student.planned_steps) == {1600} and set(student.trained_steps) == {1440}
    assert set(student.train_minutes) == {16.0}
    assert (out / "f1_vs_minutes.png").exists() and "Paired differences" in (
        out / "central.md"
    ).read_text()
