"""The real reproduction's table over pretraining seeds (``benchmarks/real_reproduction.py
--stage seeds``), on small result files written here."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from real_reproduction import replicates  # noqa: E402


def _run(folder: Path, seed: int, shift: float) -> str:
    """A run's ``real_reproduction.csv``: two snapshots per arm and stage; the plain
    student's best snapshot is not its last."""
    rows = [("random_init", "-", "random_init", 0.0, 40.0)]
    for arm, base in (("usrc", 50.0), ("plain", 48.0)):
        rows += [
            (f"teacher_{arm}/a", arm, "teacher", 5.0, base - 2),
            (f"teacher_{arm}/encoder", arm, "teacher", 20.0, base),
            (f"student_{arm}/a", arm, "student", 30.0, base + (6 if arm == "plain" else 1)),
            (f"student_{arm}/encoder", arm, "student", 60.0, base + 3),
        ]
    frame = pd.DataFrame(rows, columns=["model", "arm", "stage", "minutes", "mean"])
    frame["mean"] += shift
    frame["std"], frame["task"], frame["count"], frame["pretrain_seed"] = 2.0, "busi", 5, seed
    folder.mkdir(parents=True)
    frame.to_csv(folder / "real_reproduction.csv", index=False)
    return str(folder)


def test_seeds_table_reads_each_run_end_best_and_gap(tmp_path: Path) -> None:
    runs = [_run(tmp_path / "s0", 0, 0.0), _run(tmp_path / "s1", 1, 4.0)]
    replicates(runs, tmp_path / "out")
    table = pd.read_csv(tmp_path / "out" / "seeds.csv")
    pick = table.set_index(["pretrain_seed", "arm", "stage", "encoder"])
    assert pick.loc[(1, "plain", "student", "end"), "mean"] == 55.0
    assert pick.loc[(1, "plain", "student", "end"), "minutes"] == 60.0
    assert pick.loc[(0, "plain", "student", "best snapshot"), "mean"] == 54.0
    assert pick.loc[(0, "usrc", "student", "best snapshot"), "minutes"] == 60.0
    text = (tmp_path / "out" / "seeds.md").read_text()
    # over seeds: the mean of the two seeds' means (53 and 57) and their std
    assert "| usrc | student | end | 53.0 ± 2.0 | 57.0 ± 2.0 | 55.0 ± 2.8 |" in text
    assert "| student | end | +2.0 | +2.0 | +2.0 ± 0.0 |" in text
    assert "| student | best snapshot | -1.0 | -1.0 | -1.0 ± 0.0 |" in text
    assert (tmp_path / "out" / "seeds.png").stat().st_size > 0


def test_seeds_table_refuses_a_run_without_its_seed(tmp_path: Path) -> None:
    folder = Path(_run(tmp_path / "s0", 0, 0.0))
    frame = pd.read_csv(folder / "real_reproduction.csv").drop(columns="pretrain_seed")
    frame.to_csv(folder / "real_reproduction.csv", index=False)
    with pytest.raises(SystemExit, match="no pretrain_seed column"):
        replicates([str(folder)], tmp_path / "out")
