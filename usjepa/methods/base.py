"""Shared machinery of pretraining LightningModules: optimiser, schedule, NaN guard."""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from types import FrameType
from typing import Any

import lightning as L
import torch
from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.core.mixins import HyperparametersMixin
from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
from lightning.pytorch.utilities.parsing import collect_init_args
from torch import Tensor, nn

from usjepa.errors import UsjepaError
from usjepa.methods.optim import SchedulerCallable, WarmupCosine, param_groups


class LossDiverged(UsjepaError, FloatingPointError):
    """The training loss became NaN or infinite."""


#: where a pretraining module keeps the network it trains: JEPA's student, MAE's encoder
TRAINED_NETWORKS = ("student", "encoder")


def trained_network(module: nn.Module) -> tuple[str, Any]:
    """``(attribute, network)`` of the network ``module`` trains (its ``student``, else its
    ``encoder``): what the CLI derives sizes from, the monitors read and the export writes.

    Raises:
        AttributeError: naming the module when it has neither.
    """
    for name in TRAINED_NETWORKS:
        net = getattr(module, name, None)
        if isinstance(net, nn.Module):
            return name, net
    raise AttributeError(
        f"{type(module).__name__} has no `student` or `encoder` network; name the trained "
        "network one of them, or give the callback its attribute"
    )


def _plain(value: object) -> bool:
    """Whether ``value`` is plain data (numbers, strings, None and containers of them)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def _save_settings(module: L.LightningModule, frame: FrameType | None) -> None:
    """``save_hyperparameters`` over the whole ``__init__`` chain starting at ``frame``.

    Built by ``usjepa pretrain`` (LightningCLI), a module keeps its whole config, networks
    included as ``class_path`` entries, so ``load_from_checkpoint(path)`` rebuilds it
    alone. Built in Python, arguments that are objects (the networks, whose weights are
    in the state dict, and the optimiser and schedule factories) are left out, so the
    checkpoint stays loadable with ``torch.load(weights_only=True)``: pass them again,
    ``load_from_checkpoint(path, student=..., predictor=..., teacher=...)``.
    """
    if frame is None:
        return
    ignore: list[str] = []
    if _given_hyperparameters.get() is None:  # not built from a config
        args: dict = {}
        for local in collect_init_args(frame, [], classes=(HyperparametersMixin,)):
            args.update(local)
        ignore = [name for name, value in args.items() if not _plain(value)]
    module.save_hyperparameters(ignore=ignore, frame=frame)


class PretrainModule(L.LightningModule):
    """Base for self-supervised methods; subclasses implement :meth:`step_loss`.

    The optimisation settings are stated here once: subclasses take their own arguments
    and pass the rest (``**kwargs``) on, and LightningCLI reads them through. Every
    module saves its hyperparameters (see :func:`_save_settings`), so
    ``load_from_checkpoint`` can rebuild it.

    Args:
        optimizer: optimiser factory taking parameter groups (``OptimizerCallable``);
            AdamW by default. Weight decay comes from ``weight_decay`` per group.
        scheduler: called with the optimiser and the planned number of optimiser steps,
            stepped every step; :class:`~usjepa.methods.optim.WarmupCosine` by default
            (10 % linear warmup, cosine to 1 % of the peak, constant weight decay). Its
            ``final_weight_decay`` gives I-JEPA's cosine weight-decay ramp (0.04 -> 0.4).
            Gradient clipping is the Trainer's ``gradient_clip_val``.
        weight_decay: decay on weights (not on biases, norms, embeddings, tokens).
    """

    def __init__(
        self,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        scheduler: SchedulerCallable = WarmupCosine,
        weight_decay: float = 0.04,
    ) -> None:
        super().__init__()
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.weight_decay = weight_decay
        _save_settings(self, inspect.currentframe())

    @property
    def progress(self) -> float:
        """Share of the planned optimiser steps done, in [0, 1]."""
        total = max(1, int(self.trainer.estimated_stepping_batches))
        return min(1.0, self.global_step / total)

    def on_train_batch_start(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """Log the weight decay when the schedule moves it."""
        scheduler = self.lr_schedulers()
        if getattr(scheduler, "final_weight_decay", None) is None:
            return
        decays = [g["weight_decay"] for g in self.trainer.optimizers[0].param_groups]
        self.log("train/weight_decay", max(decays), batch_size=len(batch["image"]))

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
        """The configured optimiser (AdamW) over the trainable modules, no weight decay
        on norms and biases, and the injected per-step schedule."""
        optimizer = self.optimizer_factory(
            param_groups(self.trainable_modules(), self.weight_decay)
        )
        total = max(1, int(self.trainer.estimated_stepping_batches))
        schedule = self.scheduler_factory(optimizer, total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
