"""I-JEPA: targets from an EMA copy of the student (the baseline SALT is compared with)."""

from __future__ import annotations

import copy
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

from usjepa.methods.jepa import JEPAModule


class IJEPAModule(JEPAModule):
    """I-JEPA (Assran et al. 2023): the target encoder is an exponential moving average
    of the student, initialised from it, with momentum rising linearly from
    ``ema_momentum[0]`` to ``ema_momentum[1]`` over training.

    Its arguments are SALT's, so a SALT config becomes an I-JEPA config by its
    ``class_path`` alone: a ``teacher`` given there is accepted and dropped with a
    warning (the targets come from the EMA encoder), and ``teacher_layers`` applies to
    the EMA encoder.

    Args:
        ema_momentum: (start, end) of the linear momentum schedule (I-JEPA: 0.996 -> 1.0).
        **kwargs: ``loss``, ``target_norm`` and the optimisation settings, see
            :class:`~usjepa.methods.jepa.JEPAModule`.
    """

    def __init__(
        self,
        student: nn.Module,
        predictor: nn.Module,
        teacher: nn.Module | None = None,
        teacher_layers: int = 1,
        ema_momentum: tuple[float, float] = (0.996, 1.0),
        **kwargs: Any,
    ) -> None:
        super().__init__(student, predictor, **kwargs)
        if teacher is not None:
            rank_zero_warn(
                "IJEPAModule ignores the `teacher` argument: its targets come from an EMA "
                "copy of the student. Remove `teacher` from the config to silence this."
            )
        if self.predictor.out_dim != self.student.embed_dim:
            raise ValueError(
                f"predictor.out_dim={self.predictor.out_dim} must equal the student width "
                f"{self.student.embed_dim} for EMA targets; set predictor out_dim to it"
            )
        if not 0.0 <= ema_momentum[0] <= ema_momentum[1] <= 1.0:
            raise ValueError(f"ema_momentum must satisfy 0 <= start <= end <= 1: {ema_momentum}")
        self.teacher_layers, self.ema_momentum = teacher_layers, tuple(ema_momentum)
        self.target_encoder = copy.deepcopy(student).requires_grad_(False)

    @property
    def trained_network(self) -> nn.Module:
        """The EMA target encoder: what I-JEPA evaluates and releases (its paper's section
        on evaluation; its code saves ``target_encoder``), so exports, online probes and
        ``usjepa pretrain``'s model card take it. The student stays ``self.student``."""
        return self.target_encoder

    @property
    def momentum(self) -> float:
        """The EMA momentum at the current step (linear ramp, as I-JEPA)."""
        start, end = self.ema_momentum
        return start + (end - start) * self.progress

    def on_train_epoch_start(self) -> None:
        """Keep the EMA target encoder in eval mode."""
        self.target_encoder.eval()

    @torch.no_grad()
    def compute_targets(self, images: Tensor, targets: Tensor) -> Tensor:
        """Target tokens from the EMA target encoder."""
        return self._target_tokens(self.target_encoder, images, targets, self.teacher_layers)

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        """Step the student, then move the targets: once per optimiser step, so gradient
        accumulation over k micro-batches gives one EMA update, not k."""
        m = self.momentum  # from the step about to complete
        super().optimizer_step(*args, **kwargs)
        self.update_target(m)
        self.log("train/ema_momentum", m)

    @torch.no_grad()
    def update_target(self, momentum: float) -> None:
        """``target <- m * target + (1 - m) * student``, parameter by parameter."""
        targets: list[Tensor] = list(self.target_encoder.parameters())
        online = [p.detach() for p in self.student.parameters()]
        if len(targets) != len(online):
            raise RuntimeError("target encoder and student have different parameter lists")
        for target, weights in zip(targets, online, strict=True):
            target.lerp_(weights, 1.0 - momentum)
