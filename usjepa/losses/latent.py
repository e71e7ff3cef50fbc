"""Latent regression losses for JEPA targets."""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor

LossKind = Literal["smooth_l1", "l1", "mse"]


def latent_loss(
    pred: Tensor, target: Tensor, kind: LossKind = "smooth_l1", beta: float = 1.0
) -> Tensor:
    """Mean regression loss between predicted and target embeddings (any equal shapes).

    SALT and I-JEPA use smooth L1 (Huber with ``beta``); L1 (V-JEPA) and MSE are options.
    """
    if kind == "smooth_l1":
        return F.smooth_l1_loss(pred, target, beta=beta)
    if kind == "l1":
        return F.l1_loss(pred, target)
    if kind == "mse":
        return F.mse_loss(pred, target)
    raise ValueError(f"unknown loss {kind!r}; choose smooth_l1, l1 or mse")
