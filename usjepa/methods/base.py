"""Shared machinery of pretraining LightningModules: optimiser, schedule, NaN guard."""

from __future__ import annotations

import math
from collections.abc import Iterable

import lightning as L
import torch
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from usjepa.errors import UsjepaError
from usjepa.methods.optim import param_groups, warmup_cosine


class LossDiverged(UsjepaError, FloatingPointError):
    """The training loss became NaN or infinite."""


class PretrainModule(L.LightningModule):
    """Base for self-supervised methods; subclasses implement :meth:`step_loss`.

    Args:
        optimizer: optimiser factory taking parameter groups (``OptimizerCallable``);
            AdamW by default. Weight decay comes from ``weight_decay`` per group.
        weight_decay: decay on weights (not on biases, norms, embeddings, tokens).
        warmup_fraction: share of total steps spent in linear LR warmup.
        min_lr_ratio: final LR as a fraction of the peak after cosine decay.
        final_weight_decay: when set, weight decay follows a cosine from
            ``weight_decay`` to this value over training, per step (I-JEPA: 0.04 -> 0.4).
            Gradient clipping is the Trainer's ``gradient_clip_val``.
    """

    def __init__(
        self,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        weight_decay: float = 0.04,
        warmup_fraction: float = 0.1,
        min_lr_ratio: float = 0.01,
        final_weight_decay: float | None = None,
    ) -> None:
        super().__init__()
        self.optimizer_factory = optimizer
        self.weight_decay = weight_decay
        self.warmup_fraction = warmup_fraction
        self.min_lr_ratio = min_lr_ratio
        self.final_weight_decay = final_weight_decay

    @property
    def progress(self) -> float:
        """Share of the planned optimiser steps done, in [0, 1]."""
        total = max(1, int(self.trainer.estimated_stepping_batches))
        return min(1.0, self.global_step / total)

    def on_train_batch_start(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """Set the learning rate and weight decay of this step from the schedules."""
        if self.final_weight_decay is None:
            return
        cos = 0.5 * (1.0 + math.cos(math.pi * self.progress))
        wd = self.final_weight_decay + (self.weight_decay - self.final_weight_decay) * cos
        for optimizer in self.trainer.optimizers:
            for group in optimizer.param_groups:
                if group.get("weight_decay", 0.0) > 0.0:  # groups without decay stay at 0
                    group["weight_decay"] = wd
        self.log("train/weight_decay", wd, batch_size=len(batch["image"]))

    def trainable_modules(self) -> Iterable[nn.Module]:
        """Modules whose parameters the optimiser updates (frozen parts are left out)."""
        return [self]

    def step_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Return the loss and extra scalars to log for one batch."""
        raise NotImplementedError

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """The method's loss on one batch, logged with its parts."""
        loss, extras = self.step_loss(batch)
        if not torch.isfinite(loss):
            raise LossDiverged(
                f"{type(self).__name__}: loss became {loss.item()} at global step "
                f"{self.global_step}. Checkpoints already written are kept. Lower the "
                "learning rate, raise warmup, set trainer.gradient_clip_val, or check the "
                "inputs (constant or corrupt images give zero-variance targets)."
            )
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["image"]))
        for name, value in extras.items():
            self.log(f"train/{name}", value, batch_size=len(batch["image"]))
        if "skipped_frames" in batch:  # unreadable frames skipped so far (CorpusDataModule)
            self.log("data/skipped_frames", batch["skipped_frames"], batch_size=1)
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """The method's loss on one validation batch."""
        loss, _ = self.step_loss(batch)
        self.log("val/loss", loss, prog_bar=True, sync_dist=True, batch_size=len(batch["image"]))

    def configure_optimizers(self):  # type: ignore[no-untyped-def]
        """The configured optimiser (AdamW) over the trainable modules; no weight decay
        on norms and biases."""
        optimizer = self.optimizer_factory(
            param_groups(self.trainable_modules(), self.weight_decay)
        )
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = int(self.warmup_fraction * total)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: warmup_cosine(s, total, warmup, self.min_lr_ratio)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
