"""Paired comparisons of probed encoders (usjepa.eval.compare) and the probe's saved
test predictions that feed them."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from tests.conftest import real_scan_task, tiny_encoder
from usjepa.data.tasks import ProbeDataModule
from usjepa.eval import ProbeProtocol, macro_f1, paired_bootstrap, run_probe


def _frame(models: dict[str, np.ndarray], labels: np.ndarray) -> pd.DataFrame:
    """Prediction rows as the probe writes them: ``models`` maps a name to
    ``[seeds, images]`` predicted classes."""
    rows = []
    for name, preds in models.items():
        for seed, row in enumerate(preds):
            rows.append(
                pd.DataFrame(
                    {
                        "model": name,
                        "task": "t",
                        "fraction": 1.0,
                        "seed": seed,
                        "test_index": np.arange(len(labels)),
                        "label": labels,
                        "prediction": row,
                    }
                )
            )
    return pd.concat(rows, ignore_index=True)


def test_macro_f1_matches_scikit_learn_with_and_without_weights() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 200)
    preds = np.where(rng.random((4, 200)) < 0.6, labels, rng.integers(0, 3, (4, 200)))
    ours = macro_f1(labels, preds)
    theirs = [100 * f1_score(labels, p, average="macro") for p in preds]
    assert np.allclose(ours, theirs)
    counts = rng.integers(0, 3, 200)  # a resample: each image counted 0-2 times
    weighted = macro_f1(labels, preds, counts.astype(float))
    repeated = [
        100 * f1_score(np.repeat(labels, counts), np.repeat(p, counts), average="macro")
        for p in preds
    ]
    assert np.allclose(weighted, repeated)


def test_a_better_model_separates_and_an_equal_one_does_not() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 150)
    right = np.tile(labels, (5, 1))
    noisy = [
        np.where(rng.random((5, 150)) < 0.5, labels, rng.integers(0, 3, (5, 150))) for _ in range(2)
    ]
    frame = _frame({"good": right, "weak": noisy[0], "weak_too": noisy[1]}, labels)
    better = paired_bootstrap(frame, "good", "weak", resamples=500)
    assert better.separates and better.low > 20
    assert better.difference == pytest.approx(100 - macro_f1(labels, noisy[0]).mean())
    assert len(better.per_seed) == 5 and all(d > 0 for d in better.per_seed)
    equal = paired_bootstrap(frame, "weak", "weak_too", resamples=500)
    assert not equal.separates and equal.low < 0 < equal.high
    same = paired_bootstrap(frame, "weak", "weak", resamples=200)
    assert same.difference == same.low == same.high == 0.0
    assert better.row()["a_ahead_in_seeds"] == 5


def test_paired_bootstrap_names_what_is_missing() -> None:
    labels = np.array([0, 1, 0, 1])
    frame = _frame({"a": np.tile(labels, (2, 1))}, labels)
    with pytest.raises(ValueError, match="no predictions of model 'b'"):
        paired_bootstrap(frame, "a", "b")
    two_tasks = pd.concat([frame, frame.assign(task="u")])
    with pytest.raises(ValueError, match="one task at a time"):
        paired_bootstrap(two_tasks, "a", "a")


def test_saved_predictions_reproduce_the_probe_scores_on_real_scans(tmp_path: Path) -> None:
    """On real lung scans (tests/fixtures/real_scans): the probe's saved test predictions,
    scored again, give the macro F1 the probe reported for each model and seed."""
    task = real_scan_task(tmp_path)
    per_seed = run_probe(
        {"r1": tiny_encoder(seed=3), "r2": tiny_encoder(seed=4)},
        ProbeDataModule(str(task), img_size=32),
        protocol=ProbeProtocol(seeds=(0, 1, 2), epochs=20),
        out_dir=str(tmp_path / "out"),
        cache_dir=None,
        save_predictions=True,
    )
    saved = pd.read_csv(tmp_path / "out" / "probe_predictions.csv.gz")
    test_images = saved["test_index"].nunique()
    assert len(saved) == 2 * 3 * test_images
    for r in per_seed.itertuples():
        rows = saved[(saved.model == r.model) & (saved.seed == r.seed)].sort_values("test_index")
        again = macro_f1(rows["label"].to_numpy(), rows["prediction"].to_numpy())[0]
        assert again == pytest.approx(100 * r.macro_f1, abs=1e-4)
    result = paired_bootstrap(saved, "r1", "r2", resamples=200)
    assert result.images == test_images and len(result.per_seed) == 3
    assert result.low <= result.difference <= result.high
