"""``benchmarks/long_run_rss.py``'s table: ratios taken within a round, then median and
range over the rounds, on runs made up here."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from long_run_rss import PEER_DEFAULT, ratios, untrimmed  # noqa: E402

OURS, TRIMMED = "usjepa, THP", "usjepa, THP, trim every step"


def _runs() -> pd.DataFrame:
    # round 0: a slow, lean machine state; round 1: fast, and the peer's RSS high
    rows = [
        (PEER_DEFAULT, 0, 4.0, 2.0),
        (OURS, 0, 6.0, 1.8),
        (TRIMMED, 0, 5.4, 1.4),
        (PEER_DEFAULT, 1, 8.0, 3.0),
        (OURS, 1, 8.0, 2.1),
        (TRIMMED, 1, 6.0, 1.5),
    ]
    frame = pd.DataFrame(rows, columns=["row", "round", "images_per_s", "peak_rss_gb"])
    frame["rss_after_last_step_gb"] = frame.peak_rss_gb - 0.1
    return frame


def test_ratios_are_taken_within_a_round_then_summarised() -> None:
    table = ratios(_runs()).set_index("row")
    ours = table.loc[OURS]
    # within a round: 1.8 / 2.0 and 2.1 / 3.0 -> 0.9 and 0.7 (the ratio of the medians,
    # 1.95 / 2.5 = 0.78, is not what the table reports)
    assert ours.peak_rss_vs_peer_default == pytest.approx(0.8)
    assert (ours.peak_rss_vs_peer_default_min, ours.peak_rss_vs_peer_default_max) == (
        pytest.approx(0.7),
        pytest.approx(0.9),
    )
    # speed: 6 / 4 and 8 / 8 -> 1.5 and 1.0
    assert ours.speed_vs_peer_default == pytest.approx(1.25)
    assert ours.speed_vs_peer_default_min == pytest.approx(1.0)
    assert ours.images_per_s == pytest.approx(7.0)
    assert (ours.images_per_s_min, ours.images_per_s_max) == (6.0, 8.0)
    assert ours.rounds == 2
    # a trimmed row against the same row untrimmed, in its round: 0.9 and 0.75
    trimmed = table.loc[TRIMMED]
    assert trimmed.speed_vs_own_untrimmed == pytest.approx(0.825)
    assert trimmed.speed_vs_own_untrimmed_max == pytest.approx(0.9)
    assert ours.speed_vs_own_untrimmed == pytest.approx(1.0)
    assert table.loc[PEER_DEFAULT].peak_rss_vs_peer_default == pytest.approx(1.0)
    assert trimmed.rss_after_last_step_gb == pytest.approx(1.35)


def test_a_trimmed_or_mmap_row_is_compared_with_the_row_it_changes() -> None:
    base = "usjepa, oneDNN matmuls, THP"
    assert untrimmed(f"{base}, trim every 10 steps") == base
    assert untrimmed(f"{base}, mmap threshold 8 MB") == base
    assert untrimmed(base) == base
