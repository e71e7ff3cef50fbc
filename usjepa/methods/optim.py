"""Optimiser parameter groups and the per-step warmup + cosine schedule (LR and weight
decay), shared by the pretraining modules and the linear probe."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler


def param_groups(modules: Iterable[nn.Module], weight_decay: float) -> list[dict[str, Any]]:
    """Split parameters into decayed and not decayed groups.

    Biases, norm weights, 1-D parameters, position embeddings, CLS and mask tokens get no
    weight decay (the I-JEPA / MAE convention). Frozen parameters are left out.
    """
    decay, no_decay = [], []
    seen: set[int] = set()
    for module in modules:
        for name, p in module.named_parameters():
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            leaf = name.rsplit(".", 1)[-1]
            if p.ndim <= 1 or leaf in ("pos_embed", "cls_token", "mask_token", "reg_token"):
                no_decay.append(p)
            else:
                decay.append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def warmup_cosine(
    step: int,
    total: int,
    warmup: int,
    final_ratio: float = 0.0,
    start_factor: float | None = None,
) -> float:
    """Multiplier: linear warmup to 1 over ``warmup`` steps, then cosine to ``final_ratio``.
    The warmup starts at ``(step + 1) / warmup``, or at ``start_factor`` when given
    (SALT's ``LinearLR(start_factor=0.01)``: ``start + (1 - start) * step / warmup``)."""
    if warmup > 0 and step < warmup:
        if start_factor is None:
            return (step + 1) / warmup
        return start_factor + (1.0 - start_factor) * step / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return final_ratio + (1.0 - final_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupCosine(LRScheduler):
    """Per-step schedule: linear LR warmup, then cosine decay to ``min_lr_ratio`` of the
    peak; optionally a cosine weight-decay ramp as well (I-JEPA's 0.04 -> 0.4).

    Modules take it as ``scheduler`` (a callable ``(optimizer, total_steps)``), so a
    config may swap in any scheduler with that call, e.g.
    ``torch.optim.lr_scheduler.CosineAnnealingLR`` (its ``T_max`` gets the total steps).

    Args:
        optimizer: the optimiser whose groups are scheduled.
        total_steps: optimiser steps planned for the run.
        warmup_fraction: share of ``total_steps`` spent in linear warmup.
        min_lr_ratio: final LR as a fraction of each group's peak.
        start_factor: the LR at the first step as a fraction of the peak (SALT: 0.01);
            ``None`` starts at ``1 / warmup_steps``.
        final_weight_decay: when set, each group with weight decay moves from its
            initial decay to this value along a cosine (groups without decay stay at 0).
        last_epoch: the index of the last step taken (``-1``: start from scratch).
    """

    def __init__(
        self,
        optimizer: Optimizer,
        total_steps: int,
        warmup_fraction: float = 0.1,
        min_lr_ratio: float = 0.01,
        final_weight_decay: float | None = None,
        last_epoch: int = -1,
        start_factor: float | None = None,
    ) -> None:
        if not 0.0 <= warmup_fraction < 1.0:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {warmup_fraction}")
        self.total_steps = max(1, int(total_steps))
        self.warmup_steps = int(warmup_fraction * self.total_steps)
        self.warmup_fraction, self.min_lr_ratio = warmup_fraction, min_lr_ratio
        self.final_weight_decay, self.start_factor = final_weight_decay, start_factor
        for group in optimizer.param_groups:
            group.setdefault("initial_weight_decay", group.get("weight_decay", 0.0))
        super().__init__(optimizer, last_epoch)

    def lr_factor(self, step: int) -> float:
        """The multiplier of the peak LR at ``step``."""
        return warmup_cosine(
            step, self.total_steps, self.warmup_steps, self.min_lr_ratio, self.start_factor
        )

    def weight_decay_at(self, step: int, initial: float) -> float:
        """The weight decay at ``step`` of a group that starts at ``initial``."""
        if self.final_weight_decay is None or initial <= 0.0:
            return initial
        cos = 0.5 * (1.0 + math.cos(math.pi * min(1.0, step / self.total_steps)))
        return self.final_weight_decay + (initial - self.final_weight_decay) * cos

    def get_lr(self) -> list[float]:  # type: ignore[override]
        """Each group's LR at the current step; also sets its weight decay."""
        step = self.last_epoch
        for group in self.optimizer.param_groups:
            group["weight_decay"] = self.weight_decay_at(step, group["initial_weight_decay"])
        return [float(base) * self.lr_factor(step) for base in self.base_lrs]


#: what a module's ``scheduler`` argument is: called with the optimiser and the planned
#: number of optimiser steps
SchedulerCallable = Callable[[Optimizer, int], LRScheduler]
