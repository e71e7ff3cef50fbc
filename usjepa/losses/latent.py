"""Latent regression losses for JEPA targets: torch's own loss modules, by name."""

from __future__ import annotations

from typing import Literal

from torch import nn

#: the loss names a config may give instead of a module
LossKind = Literal["smooth_l1", "l1", "mse"]


def latent_loss(kind: LossKind | nn.Module = "smooth_l1") -> nn.Module:
    """The loss module for ``kind``: a module is returned as it is (any
    ``(pred [N, D], target [N, D]) -> scalar``); a name gives torch's mean-reduced
    ``SmoothL1Loss(beta=1)`` (I-JEPA's), ``L1Loss`` or ``MSELoss``.

    Raises:
        ValueError: for an unknown name.
    """
    if isinstance(kind, nn.Module):
        return kind
    if kind == "smooth_l1":
        return nn.SmoothL1Loss(beta=1.0)
    if kind == "l1":
        return nn.L1Loss()
    if kind == "mse":
        return nn.MSELoss()
    raise ValueError(f"unknown loss {kind!r}; choose smooth_l1, l1 or mse, or pass an nn.Module")
