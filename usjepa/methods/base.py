"""Shared machinery of pretraining LightningModules: optimiser, schedule, NaN guard."""

from __future__ import annotations

import inspect
import math
import warnings
from collections import deque
from collections.abc import Iterable
from types import FrameType
from typing import Any

import lightning as L
import torch
from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.core.mixins import HyperparametersMixin
from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from lightning.pytorch.utilities import GradClipAlgorithmType
from lightning.pytorch.utilities.parsing import collect_init_args
from torch import Tensor, nn

from usjepa.errors import UsjepaError
from usjepa.methods.optim import SchedulerCallable, WarmupCosine, param_groups

# The JEPA and MAE modules plan batches in on_before_batch_transfer. Lightning warns
# whenever such a module is fitted with a DataModule, even one without the hook (ours):
# the module's hook is the one meant, and it runs.
warnings.filterwarnings(
    "ignore", message="You have overridden `on_before_batch_transfer` in `LightningModule`"
)


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
        self._loss_watch = LossWatch(type(self).__name__)
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
        its predictor; ``benchmarks/results/peer_step.md``). Only a step that moved the
        weights frees them, so gradient accumulation is untouched; callbacks that read
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

        Lightning's mixed-precision plugin refuses to clip for any optimiser that unscales
        its gradients inside ``step`` (fused AdamW), because under ``16-mixed`` the
        gradients it would clip are still scaled. ``bf16-mixed`` has no gradient scaler:
        the gradients are the true ones, so they are clipped as under full precision
        (Lightning's own norm or value clipping). ``16-mixed`` keeps Lightning's check, and
        other plugins (FSDP's, DeepSpeed's) their own clipping: only the plain
        ``MixedPrecision`` plugin is matched."""
        plugin = self.trainer.precision_plugin
        unscales_in_step = getattr(optimizer, "_step_supports_amp_scaling", False)  # fused
        plain_bf16 = type(plugin) is MixedPrecision and plugin.scaler is None
        if gradient_clip_val and unscales_in_step and plain_bf16:
            algorithm = GradClipAlgorithmType(gradient_clip_algorithm or "norm")
            Precision.clip_gradients(plugin, optimizer, gradient_clip_val, algorithm)
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def trainable_modules(self) -> Iterable[nn.Module]:
        """Modules whose parameters the optimiser updates (frozen parts are left out)."""
        return [self]

    def step_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Return the loss and extra scalars to log for one batch."""
        raise NotImplementedError

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """The method's loss on one batch, logged with its parts."""
        loss, extras = self.step_loss(batch)
        self._loss_watch.watch(loss.detach(), self.global_step)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["image"]))
        for name, value in extras.items():
            self.log(f"train/{name}", value, batch_size=len(batch["image"]))
        if "skipped_frames" in batch:  # unreadable frames skipped so far (CorpusDataModule)
            self.log("data/skipped_frames", batch["skipped_frames"], batch_size=1)
        return loss

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Read every loss still in flight first: no checkpoint of diverged weights."""
        self._loss_watch.flush()

    def on_train_end(self) -> None:
        """Read every loss still in flight."""
        self._loss_watch.flush()

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
