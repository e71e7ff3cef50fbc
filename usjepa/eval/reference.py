"""A scikit-learn reference probe, to cross-check the head grid.

Multinomial logistic regression (L-BFGS) on the same standardised features, with the
inverse regularisation ``C`` picked on the validation split by macro F1. scikit-learn is
a development dependency (``pip install -e .[dev]``); the grid does not need it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from usjepa.eval.metrics import classification_scores


def sklearn_probe(
    train: Tensor,
    y_train: Tensor,
    val: Tensor,
    y_val: Tensor,
    test: Tensor,
    y_test: Tensor,
    num_classes: int,
    cs: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0),
    max_iter: int = 1000,
) -> dict[str, float]:
    """Fit one logistic regression per ``C``, keep the best on val, score it on test."""
    try:
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import f1_score
    except ImportError as err:  # pragma: no cover - dev extra
        raise ImportError("the reference probe needs scikit-learn: pip install -e .[dev]") from err
    mean, std = train.mean(0), train.std(0) + 1e-6
    x_tr, x_va, x_te = ((x - mean) / std for x in (train, val, test))
    best, best_f1 = None, -1.0
    for c in cs:
        model = LogisticRegression(C=c, max_iter=max_iter)
        model.fit(x_tr.numpy(), y_train.numpy())
        f1 = f1_score(y_val.numpy(), model.predict(x_va.numpy()), average="macro")
        if f1 > best_f1:
            best, best_f1 = model, f1
    assert best is not None
    logits = best.decision_function(x_te.numpy())
    scores = classification_scores(
        torch.from_numpy(np.asarray(logits)).float(), y_test, num_classes
    )
    return {**scores, "val_macro_f1": float(best_f1), "C": float(best.C)}
