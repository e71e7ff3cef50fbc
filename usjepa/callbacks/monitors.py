"""Training monitors: throughput and data waiting, mask images, and the one way every
monitor writes its scalars (:func:`log_values`).

The collapse indicators live in :mod:`usjepa.callbacks.collapse` and the online kNN
probe in :mod:`usjepa.callbacks.online_probe`. Each monitor works every
``every_n_steps`` and costs little (``benchmarks/perf/monitor_overhead.py``).
"""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch
from torch import Tensor

from usjepa.masks.batch import MaskedBatch
from usjepa.methods.base import network_of


def log_values(trainer: L.Trainer, values: dict[str, float]) -> None:
    """Write ``monitor/<name>`` scalars to every logger at this optimiser step, once
    (``LightningModule.log`` from a callback would repeat a value at every later logging
    step of the epoch, and drop one that no logging step follows). They also go to
    ``trainer.callback_metrics``, where checkpointing and early stopping can read them."""
    named = {f"monitor/{k}": v for k, v in values.items()}
    if named:
        for logger in trainer.loggers:
            logger.log_metrics(named, trainer.global_step)
        trainer.callback_metrics.update({k: torch.tensor(v) for k, v in named.items()})


class ThroughputMonitor(L.Callback):
    """Images per second and the share of step time spent waiting for data, averaged
    over every ``every_n_steps`` steps (``monitor/images_per_s``,
    ``monitor/data_wait_share``). The wait is the time from the end of one training step
    to the start of the next, when the loop fetches the next batch; a share near 1 means
    the accelerator starves (add DataLoader workers, or use shards).

    Args:
        every_n_steps: average and log over this many steps.
    """

    def __init__(self, every_n_steps: int = 50) -> None:
        self.every_n_steps = every_n_steps
        self._end: float | None = None
        self._start = 0.0
        self._wait = self._total = 0.0
        self._images = 0
        self.last: dict[str, float] = {}

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Start timing afresh (the first fetch of an epoch includes worker start-up)."""
        self._end = None

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Note when the step starts and how long the loop waited for its batch."""
        now = time.perf_counter()
        if self._end is not None:
            self._wait += now - self._end
            self._total += now - self._end
        self._start = now

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Add the step's compute time and images; log the averages every N steps."""
        now = time.perf_counter()
        self._total += now - self._start
        self._end = now
        self._images += _batch_size(batch)
        if trainer.global_step % self.every_n_steps == 0 and self._total > 0:
            self.last = {
                "images_per_s": self._images / self._total,
                "data_wait_share": self._wait / self._total,
            }
            log_values(trainer, self.last)
            self._wait = self._total = 0.0
            self._images = 0


class MaskImages(L.Callback):
    """Every ``every_n_steps`` steps, the first ``count`` images of the batch with their
    masks drawn on (context patches tinted green, target blocks in red, patches outside
    the context and targets dimmed), as one grid image in TensorBoard
    (``monitor/masks``). Needs a TensorBoard logger; does nothing without one.

    Args:
        every_n_steps: log every this many steps.
        count: images per grid.
    """

    def __init__(self, every_n_steps: int = 500, count: int = 8) -> None:
        self.every_n_steps, self.count = every_n_steps, count
        self.logged = 0

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Draw and log the grid when due."""
        if trainer.global_step % self.every_n_steps:
            return
        try:
            masked = MaskedBatch.of(batch)
        except (KeyError, TypeError):  # not a pretraining batch: nothing to draw
            return
        experiment = getattr(trainer.logger, "experiment", None)
        grid = grid_of(trainer, pl_module)
        if not hasattr(experiment, "add_image") or grid is None:
            return
        picture = overlay_masks(masked.image, masked.context, masked.targets, grid, self.count)
        experiment.add_image("monitor/masks", picture, trainer.global_step)  # type: ignore[union-attr]
        self.logged += 1


@torch.no_grad()
def overlay_masks(
    images: Tensor, context: Tensor, targets: Tensor, grid: int, count: int = 8
) -> Tensor:
    """``[3, H, W * count]`` RGB in [0, 1]: each image (min-max scaled) with its context
    patches tinted green and its target patches red, other patches dimmed. ``context``
    ``[B, K]`` and ``targets`` ``[B, M, T]`` are patch indices on the ``grid x grid``
    patch grid, padded with ``-1``."""
    images = images[:count].float().cpu()
    b, _, h, w = images.shape
    gray = images.mean(1)
    lo = gray.flatten(1).min(1).values[:, None, None]
    hi = gray.flatten(1).max(1).values[:, None, None]
    gray = (gray - lo) / (hi - lo + 1e-6)
    maps = []
    for index in (context[:count].cpu().flatten(1), targets[:count].cpu().flatten(1)):
        flags = torch.zeros(b, grid * grid + 1)
        flags.scatter_(1, torch.where(index >= 0, index, grid * grid), 1.0)  # pads: last
        cells = flags[:, :-1].view(b, 1, grid, grid)
        maps.append(torch.nn.functional.interpolate(cells, size=(h, w), mode="nearest")[:, 0])
    ctx, tgt = maps
    shown = gray * (0.35 + 0.65 * torch.clamp(ctx + tgt, 0, 1))
    rgb = shown[:, None].repeat(1, 3, 1, 1)
    rgb[:, 1] = torch.where(ctx > 0, 0.6 * rgb[:, 1] + 0.4, rgb[:, 1])
    rgb[:, 0] = torch.where(tgt > 0, 0.5 * rgb[:, 0] + 0.5, rgb[:, 0])
    rgb[:, 1] = torch.where(tgt > 0, 0.5 * rgb[:, 1], rgb[:, 1])
    return torch.cat(list(rgb), dim=-1).clamp(0, 1)


def _batch_size(batch: Any) -> int:
    """Images in a batch: a :class:`MaskedBatch` or a mapping with ``image``; 0 else."""
    if isinstance(batch, MaskedBatch):
        return len(batch)
    images = batch.get("image") if isinstance(batch, dict) else None
    return len(images) if images is not None else 0


def grid_of(trainer: L.Trainer, pl_module: L.LightningModule) -> int | None:
    """The patch grid's side: the mask generator's, else the trained network's."""
    collate = getattr(getattr(trainer, "datamodule", None), "collate", None)
    generator = getattr(collate, "generator", None)
    if generator is not None:
        return int(generator.grid_size)
    net = network_of(pl_module)
    grid = getattr(net, "grid_size", None)
    return None if grid is None else int(grid)
