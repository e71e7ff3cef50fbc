"""Shared machinery of pretraining LightningModules: optimiser, schedule, NaN guard."""

from __future__ import annotations

import abc
import inspect
import math
from collections import deque
from collections.abc import Iterable, Mapping
from types import FrameType
from typing import Any

import lightning as L
import torch
from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.core.mixins import HyperparametersMixin
from lightning.pytorch.plugins.precision import MixedPrecision
from lightning.pytorch.utilities.parsing import collect_init_args
from torch import Tensor, nn

from usjepa.errors import UsjepaError
from usjepa.masks.batch import MaskedBatch
from usjepa.methods.optim import SchedulerCallable, WarmupCosine, param_groups

#: what a training step gives back: the loss, the scalars to log, the outputs monitors read
StepResult = tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]


class LossDiverged(UsjepaError, FloatingPointError):
    """The training loss became NaN or infinite."""


class LossWatch:
    """Raises :class:`LossDiverged` when a training loss is NaN or infinite.

    A loss on the host is read at once. Reading a GPU loss at once would stall the step
    until the device has caught up (a host-device synchronisation every step), so its
    value is copied to pinned host memory without blocking and read once the copy has
    landed: at a later step's :meth:`watch`, and at the latest by :meth:`flush` (before
    any checkpoint is written and when training ends). Detection may then come a few
    steps late, but no checkpoint of diverged weights is ever written.

    Args:
        owner: the module's name, for the message.
        deferred: read losses once landed (``None``: for CUDA losses only).
    """

    def __init__(self, owner: str, deferred: bool | None = None) -> None:
        self.owner, self.deferred = owner, deferred
        self.pending: deque[tuple[int, Tensor, Any]] = deque()

    def watch(self, loss: Tensor, step: int) -> None:
        """Check ``loss`` (a scalar) of global step ``step``, and any landed earlier one."""
        deferred = loss.is_cuda if self.deferred is None else self.deferred
        if not deferred:
            self._check(float(loss), step)
            return
        if loss.is_cuda:
            host = torch.empty((), dtype=loss.dtype, pin_memory=True)
            host.copy_(loss, non_blocking=True)
            landed: Any = torch.cuda.Event()
            landed.record()
        else:
            host, landed = loss.clone(), None  # nothing in flight on the host
        self.pending.append((step, host, landed))
        self._read(wait=False)

    def flush(self) -> None:
        """Read every loss still in flight (waits for the device)."""
        self._read(wait=True)

    def _read(self, wait: bool) -> None:
        while self.pending:
            step, host, landed = self.pending[0]
            if landed is not None and not wait and not landed.query():
                return
            if landed is not None:
                landed.synchronize()
            self.pending.popleft()
            self._check(float(host), step)

    def _check(self, value: float, step: int) -> None:
        if not math.isfinite(value):
            self.pending.clear()
            raise LossDiverged(
                f"{self.owner}: loss became {value} at global step {step}. Checkpoints "
                "already written are kept. Lower the learning rate, raise warmup, set "
                "trainer.gradient_clip_val, or check the inputs (constant or corrupt "
                "images give zero-variance targets)."
            )


def network_of(module: L.LightningModule) -> nn.Module:
    """``module.trained_network`` of a :class:`PretrainModule`.

    Raises:
        TypeError: naming the module when it is not one.
    """
    if not isinstance(module, PretrainModule):
        raise TypeError(
            f"{type(module).__name__} is not a usjepa PretrainModule, so it names no "
            "trained network; subclass one of usjepa.methods"
        )
    return module.trained_network


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
    """``save_hyperparameters`` over the whole ``__init__`` chain starting at ``frame``,
    without the arguments that are objects (the networks, whose weights are in the state
    dict, and the optimiser and schedule factories), so the checkpoint stays loadable with
    ``torch.load(weights_only=True)``. Built in Python, a module is then reloaded with its
    networks passed again, ``load_from_checkpoint(path, student=..., predictor=...,
    teacher=...)``; built by ``usjepa pretrain``, the CLI writes their configs back
    (:meth:`usjepa.cli.PretrainCLI.after_instantiate_classes`), so
    ``load_from_checkpoint(path)`` rebuilds it alone.
    """
    if frame is None:
        return
    args: dict[str, Any] = {}
    for local in collect_init_args(frame, [], classes=(HyperparametersMixin,)):
        args.update(local)
    ignore = [name for name, value in args.items() if not _plain(value)]
    module.save_hyperparameters(ignore=ignore, frame=frame)


class PretrainModule(L.LightningModule, abc.ABC):
    """Base for self-supervised methods; subclasses implement :meth:`step` and
    :attr:`trained_network`.

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
        self._loss_watch = LossWatch(type(self).__name__)
        _save_settings(self, inspect.currentframe())

    @property
    def progress(self) -> float:
        """Share of the planned optimiser steps done, in [0, 1]."""
        total = max(1, int(self.trainer.estimated_stepping_batches))
        return min(1.0, self.global_step / total)

    @property
    @abc.abstractmethod
    def trained_network(self) -> nn.Module:
        """The network this method trains (JEPA's student, MAE's encoder): what the CLI
        derives sizes from, the monitors read and the export writes."""

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """Log the weight decay when the schedule moves it."""
        scheduler = self.lr_schedulers()
        if getattr(scheduler, "final_weight_decay", None) is None:
            return
        decays = [g["weight_decay"] for g in self.trainer.optimizers[0].param_groups]
        self.log("train/weight_decay", max(decays), batch_size=len(MaskedBatch.of(batch)))

    def optimizer_step(
        self,
        epoch: int,
        batch_idx: int,
        optimizer: Any,
        optimizer_closure: Any = None,
    ) -> None:
        """Step the optimiser, then free the gradients at once (``set_to_none``).

        Lightning zeroes them inside the next step's closure, after that step's forward
        pass, so the whole forward would run with last step's gradients still held: one
        more copy of the trainable weights at the step's peak (about 0.13 GB for ViT-S and
        its predictor; ``benchmarks/results/perf/peer_step/peer_step.md``). Only a step that
        moved the weights frees them, so gradient accumulation is untouched; callbacks that read
        gradients do so in ``on_before_optimizer_step``, which runs before this."""
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        optimizer.zero_grad(set_to_none=True)

    def configure_gradient_clipping(
        self,
        optimizer: Any,
        gradient_clip_val: int | float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Clip as Lightning does, and also for a fused optimiser under ``bf16-mixed``.

        Lightning's mixed-precision plugin refuses to clip for a fused optimiser (fused
        AdamW unscales its gradients inside ``step``), because under ``16-mixed`` the
        gradients it would clip are still scaled. ``bf16-mixed`` has no gradient scaler:
        the gradients are the true ones, so they are clipped here with
        ``torch.nn.utils.clip_grad_norm_`` (or ``clip_grad_value_``), as under full
        precision. ``16-mixed`` keeps Lightning's check, and other plugins (FSDP's,
        DeepSpeed's) their own clipping: only the plain ``MixedPrecision`` plugin is
        matched."""
        plugin = self.trainer.precision_plugin
        fused = bool(getattr(optimizer, "defaults", {}).get("fused"))
        plain_bf16 = type(plugin) is MixedPrecision and plugin.scaler is None
        if gradient_clip_val and fused and plain_bf16:
            params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
            if (gradient_clip_algorithm or "norm") == "value":
                torch.nn.utils.clip_grad_value_(params, gradient_clip_val)
            else:
                torch.nn.utils.clip_grad_norm_(params, gradient_clip_val)
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def trainable_modules(self) -> Iterable[nn.Module]:
        """Modules whose parameters the optimiser updates (frozen parts are left out)."""
        return [self]

    @abc.abstractmethod
    def step(self, batch: MaskedBatch) -> StepResult:
        """One batch's ``(loss, scalars to log, outputs)``: the outputs (detached tensors)
        are what :meth:`training_step` returns beside the loss, for callbacks to read
        in ``on_train_batch_end`` (the collapse monitor reads JEPA's)."""

    def step_loss(self, batch: MaskedBatch | Mapping[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        """The loss and the scalars to log for one batch (:meth:`step` without outputs)."""
        loss, extras, _ = self.step(MaskedBatch.of(batch))
        return loss, extras

    def training_step(self, batch: MaskedBatch | Mapping[str, Any], batch_idx: int) -> Any:
        """The method's loss on one batch, logged with its parts; returns
        ``{"loss": loss, **outputs}`` (see :meth:`step`)."""
        batch = MaskedBatch.of(batch)
        loss, extras, outputs = self.step(batch)
        self._loss_watch.watch(loss.detach(), self.global_step)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch))
        for name, value in extras.items():
            self.log(f"train/{name}", value, batch_size=len(batch))
        if batch.skipped_frames is not None:  # unreadable frames skipped so far
            self.log("data/skipped_frames", batch.skipped_frames, batch_size=1)
        return {"loss": loss, **outputs}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Read every loss still in flight first: no checkpoint of diverged weights."""
        self._loss_watch.flush()

    def on_train_end(self) -> None:
        """Read every loss still in flight."""
        self._loss_watch.flush()

    def validation_step(self, batch: MaskedBatch | Mapping[str, Any], batch_idx: int) -> None:
        """The method's loss on one validation batch."""
        batch = MaskedBatch.of(batch)
        loss, _, _ = self.step(batch)
        self.log("val/loss", loss, prog_bar=True, sync_dist=True, batch_size=len(batch))

    def configure_optimizers(self):  # type: ignore[no-untyped-def]
        """The configured optimiser (AdamW) over the trainable modules, no weight decay
        on norms and biases, and the injected per-step schedule."""
        optimizer = self.optimizer_factory(
            param_groups(self.trainable_modules(), self.weight_decay)
        )
        total = max(1, int(self.trainer.estimated_stepping_batches))
        schedule = self.scheduler_factory(optimizer, total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
