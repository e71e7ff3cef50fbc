"""The real reproduction's table over pretraining seeds (``benchmarks/quality/real_reproduction.py
--stage seeds``), on small result files written here."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.quality import real_reproduction
from benchmarks.quality.real_reproduction import replicates


def _run(folder: Path, seed: int, shift: float) -> str:
    """A run's ``real_reproduction.csv``: two snapshots per arm and stage. Validation and
    test disagree on the students: the plain student's best test F1 is at its first
    snapshot but its best validation F1 at its last, the USrc student's the other way
    round."""
    rows = [("random_init", "-", "random_init", 0.0, 40.0, 45.0)]
    for arm, base in (("usrc", 50.0), ("plain", 48.0)):
        early, late = (70.0, 60.0) if arm == "usrc" else (60.0, 70.0)
        rows += [
            (f"teacher_{arm}/a", arm, "teacher", 5.0, base - 2, 50.0),
            (f"teacher_{arm}/encoder", arm, "teacher", 20.0, base, 55.0),
            (f"student_{arm}/a", arm, "student", 30.0, base + (6 if arm == "plain" else 1), early),
            (f"student_{arm}/encoder", arm, "student", 60.0, base + 3, late),
        ]
    frame = pd.DataFrame(rows, columns=["model", "arm", "stage", "minutes", "mean", "val_mean"])
    frame["mean"] += shift
    frame["std"], frame["task"], frame["count"], frame["pretrain_seed"] = 2.0, "busi", 5, seed
    folder.mkdir(parents=True)
    frame.to_csv(folder / "real_reproduction.csv", index=False)
    return str(folder)


def test_seeds_table_reads_each_run_end_best_on_validation_and_gap(tmp_path: Path) -> None:
    runs = [_run(tmp_path / "s0", 0, 0.0), _run(tmp_path / "s1", 1, 4.0)]
    replicates(runs, tmp_path / "out")
    table = pd.read_csv(tmp_path / "out" / "seeds.csv")
    pick = table.set_index(["pretrain_seed", "arm", "stage", "encoder"])
    assert pick.loc[(1, "plain", "student", "end"), "mean"] == 55.0
    assert pick.loc[(1, "plain", "student", "end"), "minutes"] == 60.0
    # chosen on validation, not on test: the plain student's last snapshot (51, not 54),
    # the USrc student's first (51, not 53)
    for seed, shift in ((0, 0.0), (1, 4.0)):
        best = pick.loc[(seed, "plain", "student", "best on validation")]
        assert (best["mean"], best["minutes"], best["val_mean"]) == (51.0 + shift, 60.0, 70.0)
        best = pick.loc[(seed, "usrc", "student", "best on validation")]
        assert (best["mean"], best["minutes"]) == (51.0 + shift, 30.0)
    text = (tmp_path / "out" / "seeds.md").read_text()
    # over seeds: the mean of the two seeds' means (53 and 57) and their std
    assert "| usrc | student | end | 53.0 ± 2.0 | 57.0 ± 2.0 | 55.0 ± 2.8 |" in text
    assert "| student | end | +2.0 | +2.0 | +2.0 ± 0.0 |" in text
    assert "| student | best on validation | +0.0 | +0.0 | +0.0 ± 0.0 |" in text
    assert (tmp_path / "out" / "seeds.png").stat().st_size > 0


@pytest.mark.parametrize("column", ["pretrain_seed", "val_mean"])
def test_seeds_table_refuses_a_run_written_before_its_columns(tmp_path: Path, column) -> None:
    folder = Path(_run(tmp_path / "s0", 0, 0.0))
    frame = pd.read_csv(folder / "real_reproduction.csv").drop(columns=column)
    frame.to_csv(folder / "real_reproduction.csv", index=False)
    with pytest.raises(SystemExit, match=f"no {column} column.*--stage report"):
        replicates([str(folder)], tmp_path / "out")


def test_report_takes_validation_means_over_probe_seeds(tmp_path: Path) -> None:
    per_seed = pd.DataFrame(
        {"model": ["a", "a", "b"], "seed": [0, 1, 0], "val_macro_f1": [0.5, 0.6, 0.7]}
    )
    per_seed.to_csv(tmp_path / "probe_per_seed.csv", index=False)
    means = real_reproduction.val_means(tmp_path / "probe_per_seed.csv")
    assert means["a"] == pytest.approx(55.0) and means["b"] == pytest.approx(70.0)


def _ns(**over: object) -> argparse.Namespace:
    base = dict(
        manifest="m.parquet", shards="shards", task="/tasks/busi", seed=1, init_seed=None,
        work="runs/x", img_size=128, every=5.0, threads=1, teacher_steps=None,
        student_steps=None,
    )  # fmt: skip
    return argparse.Namespace(**{**base, **over})


def _flag(cmd: list[str], name: str) -> str | None:
    return cmd[cmd.index(name) + 1] if name in cmd else None


def test_init_seed_reaches_the_encoder_each_stage_trains(tmp_path: Path) -> None:
    teacher = real_reproduction.command("teacher", "usrc", _ns(init_seed=7), tmp_path, [])
    student = real_reproduction.command("student", "plain", _ns(init_seed=7), tmp_path, [])
    assert _flag(teacher, "--model.init_args.encoder.init_args.init_seed") == "7"
    assert _flag(student, "--model.init_args.student.init_args.init_seed") == "7"
    assert _flag(student, "--seed_everything") == "1"
    recipe = real_reproduction.command("student", "plain", _ns(), tmp_path, [])
    assert not any(part.endswith(".init_seed") for part in recipe)  # the recipe's own


def test_a_given_step_budget_loosens_the_clock(tmp_path: Path, monkeypatch) -> None:
    seen: dict[str, list[str]] = {}
    monkeypatch.setattr(real_reproduction, "side_by_side", lambda cmds, *a: seen.update(cmds))
    monkeypatch.setattr(real_reproduction, "calibrate", lambda *a: 100.0)  # steps/min
    real_reproduction.train("student", 40, _ns(), tmp_path)  # calibrated: the minutes bind
    assert _flag(seen["student_usrc"], "--trainer.max_steps") == "4000"
    assert _flag(seen["student_usrc"], "--trainer.max_time") == "00:00:41:00"
    real_reproduction.train("student", 40, _ns(student_steps=13813), tmp_path)
    assert _flag(seen["student_plain"], "--trainer.max_steps") == "13813"
    assert _flag(seen["student_plain"], "--trainer.max_time") == "00:01:01:00"
