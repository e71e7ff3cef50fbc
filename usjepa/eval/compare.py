"""Paired comparisons of two probed encoders with bootstrap intervals.

``usjepa probe ... --save_predictions true`` writes ``probe_predictions.csv.gz``: the chosen
head's class for every test image, per model, task, label fraction and probe seed (or
pretraining seed, when each seed's encoder is probed under its own model name and the rows
are relabelled). :func:`paired_bootstrap` compares two models on the same images and seeds:
the mean over seeds of the per-seed macro-F1 difference, with a percentile interval from
resampling the seeds (paired: a seed's two runs stay together) and the test images (the
same images for both models).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["PairedDifference", "macro_f1", "paired_bootstrap"]


def macro_f1(
    labels: np.ndarray, predictions: np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray:
    """Macro F1 (%) of each row of ``predictions`` ``[runs, images]`` against ``labels``
    ``[images]``, each image counted ``weights[..., image]`` times (a bootstrap resample;
    ``[images]`` or ``[resamples, images]``). A class with no true and no predicted image
    in a sample is left out of its mean, as scikit-learn's ``labels`` default does."""
    predictions = np.atleast_2d(predictions)
    w = np.ones(labels.shape[0]) if weights is None else weights
    w = w[..., None, :]  # [..., 1, images], broadcast over runs
    scores = []
    for c in np.union1d(np.unique(labels), np.unique(predictions)):
        truth, said = labels == c, predictions == c
        tp = (w * (truth & said)).sum(-1)
        fp = (w * (~truth & said)).sum(-1)
        fn = (w * (truth & ~said)).sum(-1)
        denominator = 2 * tp + fp + fn
        with np.errstate(invalid="ignore", divide="ignore"):
            scores.append(np.where(denominator > 0, 2 * tp / denominator, np.nan))
    result: np.ndarray = 100.0 * np.nanmean(np.stack(scores), axis=0)
    return result


@dataclass(frozen=True)
class PairedDifference:
    """``a`` minus ``b`` in macro F1 points: the mean over seeds, each seed's difference,
    and the bootstrap interval."""

    a: str
    b: str
    difference: float
    low: float
    high: float
    per_seed: tuple[float, ...]
    images: int
    level: float

    @property
    def separates(self) -> bool:
        """Whether the interval leaves out zero."""
        return self.low > 0 or self.high < 0

    def row(self) -> dict[str, object]:
        """A flat record for a CSV."""
        return {
            "a": self.a,
            "b": self.b,
            "difference": self.difference,
            f"low_{self.level:.0%}": self.low,
            f"high_{self.level:.0%}": self.high,
            "separates_from_zero": self.separates,
            "seeds": len(self.per_seed),
            "a_ahead_in_seeds": sum(d > 0 for d in self.per_seed),
            "per_seed": " ".join(f"{d:+.1f}" for d in self.per_seed),
            "test_images": self.images,
        }


def _matrix(rows: pd.DataFrame, model: str, seeds: list[int]) -> np.ndarray:
    table = rows[rows["model"] == model].pivot(
        index="seed", columns="test_index", values="prediction"
    )
    matrix: np.ndarray = table.loc[seeds].to_numpy()
    return matrix


def paired_bootstrap(
    predictions: pd.DataFrame,
    a: str,
    b: str,
    *,
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> PairedDifference:
    """Macro F1 of model ``a`` minus model ``b`` on one task (``predictions`` holds one
    task and label fraction: ``model``, ``seed``, ``test_index``, ``label``,
    ``prediction``), over the seeds both have, with a ``level`` percentile interval from
    ``resamples`` draws of seeds and test images together.

    Raises:
        ValueError: the rows hold several tasks or fractions, a model is missing, or the
            two share no seed.
    """
    for column in ("task", "fraction"):
        if column in predictions and predictions[column].nunique() > 1:
            raise ValueError(f"paired_bootstrap: give one {column} at a time")
    seeds_of = {m: set(predictions.loc[predictions["model"] == m, "seed"]) for m in (a, b)}
    for m, found in seeds_of.items():
        if not found:
            raise ValueError(f"paired_bootstrap: no predictions of model {m!r}")
    seeds = sorted(seeds_of[a] & seeds_of[b])
    if not seeds:
        raise ValueError(f"paired_bootstrap: {a!r} and {b!r} share no seed")
    labels = (
        predictions.drop_duplicates("test_index").set_index("test_index")["label"].sort_index()
    ).to_numpy()
    pa, pb = _matrix(predictions, a, seeds), _matrix(predictions, b, seeds)
    per_seed = macro_f1(labels, pa) - macro_f1(labels, pb)
    rng = np.random.default_rng(seed)
    n, k = labels.shape[0], len(seeds)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(float)
    picks = rng.integers(0, k, size=(resamples, k))
    fa = macro_f1(labels, pa, weights)  # [resamples, seeds]
    fb = macro_f1(labels, pb, weights)
    diffs = np.take_along_axis(fa - fb, picks, axis=1).mean(axis=1)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(diffs, [tail, 100.0 - tail])
    return PairedDifference(
        a=a,
        b=b,
        difference=float(per_seed.mean()),
        low=float(low),
        high=float(high),
        per_seed=tuple(float(d) for d in per_seed),
        images=n,
        level=level,
    )
