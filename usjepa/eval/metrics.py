"""Classification metrics of one probe head on a test split (torchmetrics functional)."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_auroc,
    multiclass_confusion_matrix,
    multiclass_f1_score,
)


def classification_scores(logits: Tensor, labels: Tensor, num_classes: int) -> dict[str, float]:
    """Macro F1, accuracy, balanced accuracy, macro AUROC and per-class F1.

    Args:
        logits: ``[N, C]``.
        labels: ``[N]`` integer classes.
        num_classes: ``C``; classes absent from ``labels`` count as F1 0 where predicted.

    Returns:
        Flat dict: ``macro_f1``, ``accuracy``, ``balanced_accuracy``, ``macro_auroc`` and
        ``f1_class<k>`` per class.
    """
    pred = logits.argmax(-1)
    per_class = multiclass_f1_score(pred, labels, num_classes, average="none")
    scores = {
        "macro_f1": float(multiclass_f1_score(pred, labels, num_classes, average="macro")),
        "accuracy": float(multiclass_accuracy(pred, labels, num_classes, average="micro")),
        "balanced_accuracy": float(multiclass_accuracy(pred, labels, num_classes, average="macro")),
        "macro_auroc": float(
            multiclass_auroc(
                torch.softmax(logits.float(), -1), labels, num_classes, average="macro"
            )
        ),
    }
    scores.update({f"f1_class{k}": float(v) for k, v in enumerate(per_class)})
    return scores


def confusion(logits: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """``[C, C]`` counts, rows true class, columns predicted class."""
    return multiclass_confusion_matrix(logits.argmax(-1), labels, num_classes)
