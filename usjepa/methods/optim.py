"""Optimiser parameter groups and the per-step warmup + cosine schedule."""

from __future__ import annotations

import math
from collections.abc import Iterable

from torch import nn


def param_groups(modules: Iterable[nn.Module], weight_decay: float) -> list[dict]:
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


def warmup_cosine(step: int, total: int, warmup: int, final_ratio: float = 0.0) -> float:
    """Multiplier: linear warmup from 0 to 1 over ``warmup`` steps, cosine to ``final_ratio``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return final_ratio + (1.0 - final_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
