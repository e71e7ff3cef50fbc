"""Training monitors: collapse indicators, throughput and data waiting, mask images.

A JEPA run can collapse quietly: the loss keeps falling while the student's embeddings
shrink to a few directions. :class:`CollapseMonitor` logs the signals that show it early
and warns when one crosses its threshold; :class:`ThroughputMonitor` shows whether the
GPUs wait for data; :class:`MaskImages` shows what the context and target blocks cover.
Each works every ``every_n_steps`` and costs little (``benchmarks/monitor_overhead.py``).
"""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from usjepa.methods.base import trained_network


def rankme(embeddings: Tensor, eps: float = 1e-7) -> float:
    """RankMe (Garrido et al. 2023): the effective rank of ``[N, D]`` embeddings,
    ``exp`` of the entropy of their normalised singular values; between 1 (collapsed to
    one direction) and ``min(N, D)``."""
    values = torch.linalg.svdvals(embeddings.float())
    p = values / (values.sum() + eps) + eps
    return float(torch.exp(-(p * p.log()).sum()))


def _std(embeddings: Tensor) -> float:
    """Mean over dimensions of the std over rows, of L2-normalised rows (scale-free)."""
    normed = torch.nn.functional.normalize(embeddings.float(), dim=-1)
    return float(normed.std(dim=0).mean())


class CollapseMonitor(L.Callback):
    """Collapse indicators of a JEPA step, every ``every_n_steps`` steps:

    - ``monitor/student_rankme``, ``monitor/predictor_rankme``: effective rank of the
      student's context tokens and of the predictions (up to ``max_rows`` of each);
    - ``monitor/student_std``, ``monitor/predictor_std``: per-dimension std of the
      L2-normalised tokens (``1/sqrt(D)`` when spread evenly, 0 when collapsed);
    - ``monitor/target_rankme``: effective rank of the targets, the reference the two
      ranks above are read against;
    - ``monitor/pred_target_cosine``: mean cosine similarity of prediction and target.

    A warning goes to the log (once per indicator, until it recovers), from
    ``warmup_steps`` on, when a rank falls under ``min_rank_fraction`` of the width, or
    the student's or predictor's under ``min_rank_vs_targets`` of the targets' rank, or
    a std under ``min_std`` times ``1/sqrt(D)``. The targets matter: a weak frozen
    teacher gives low-rank targets, and a student that matches them is learning, not
    collapsing; a predictor regresses the predictable part of its targets, so its rank
    sits below theirs (in the demo, targets about 42 of 192, the predictor 7 at step 100
    rising to 13; ``benchmarks/results/demo_monitors.md``). Freshly initialised
    predictors give low-rank outputs, hence the warm-up.

    Args:
        every_n_steps: read every this many optimiser steps.
        max_rows: tokens used for the effective rank (an SVD of ``max_rows x D``).
        min_rank_fraction: warn under this share of the width as effective rank.
        min_rank_vs_targets: warn when the student's or predictor's effective rank is
            under this share of the targets'.
        min_std: warn under this fraction of an even spread's std.
        warmup_steps: no warning before this step (the indicators are logged).
    """

    def __init__(
        self,
        every_n_steps: int = 50,
        max_rows: int = 1024,
        min_rank_fraction: float = 0.02,
        min_rank_vs_targets: float = 0.1,
        min_std: float = 0.1,
        warmup_steps: int = 100,
    ) -> None:
        self.every_n_steps, self.max_rows = every_n_steps, max_rows
        self.min_rank_fraction, self.min_std = min_rank_fraction, min_std
        self.min_rank_vs_targets, self.warmup_steps = min_rank_vs_targets, warmup_steps
        self.warned: set[str] = set()
        self.last: dict[str, float] = {}

    def _due(self, trainer: L.Trainer) -> bool:
        return trainer.global_step % self.every_n_steps == 0

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Ask a JEPA module to keep this step's outputs when the step is read."""
        if hasattr(pl_module, "keep_outputs"):
            setattr(pl_module, "keep_outputs", self._due(trainer))  # noqa: B010

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Compute and log the indicators of the kept outputs, and warn on collapse."""
        kept: dict[str, Tensor] = getattr(pl_module, "last_outputs", {})
        if not getattr(pl_module, "keep_outputs", False) or not kept:
            return
        setattr(pl_module, "keep_outputs", False)  # noqa: B010
        values = indicators(kept, self.max_rows)
        self.last = values
        log_values(trainer, values)
        if trainer.global_step >= self.warmup_steps:
            self.warn(values, kept)
        kept.clear()

    def warn(self, values: dict[str, float], kept: dict[str, Tensor]) -> None:
        """Warn (once, until it recovers) about an indicator under its threshold."""
        for part, key in _PARTS:
            if f"{part}_rankme" not in values:
                continue
            width = kept[key].shape[-1]
            rank, floor = values[f"{part}_rankme"], self.min_rank_fraction * width
            reference = values.get("target_rankme")
            if part != "target" and reference is not None:
                floor = max(floor, self.min_rank_vs_targets * reference)
            checks = {
                f"{part}_rankme": rank < floor,
                f"{part}_std": values[f"{part}_std"] < self.min_std / width**0.5,
            }
            for name, low in checks.items():
                if low and name not in self.warned:
                    self.warned.add(name)
                    against = f", targets' rank {reference:.3g}" if reference else ""
                    rank_zero_warn(
                        f"collapse warning: {name} = {values[name]:.4g} (width "
                        f"{width}{against}); the embeddings are shrinking to a few "
                        "directions. Check the learning rate, the target normalisation "
                        "(target_norm) and the masks"
                    )
                elif not low:
                    self.warned.discard(name)


#: (indicator prefix, kept output) of the outputs whose collapse is watched
_PARTS = (("student", "student"), ("predictor", "predictions"), ("target", "targets"))


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


def indicators(kept: dict[str, Tensor], max_rows: int = 1024) -> dict[str, float]:
    """The collapse indicators of one step's kept outputs (``student``, ``predictions``,
    ``targets``: ``[N, D]`` rows)."""
    values: dict[str, float] = {}
    for part, key in _PARTS:
        rows = kept.get(key)
        if rows is None or len(rows) < 2:
            continue
        sample = rows[:: max(1, len(rows) // max_rows)][:max_rows]
        values[f"{part}_rankme"] = rankme(sample)
        values[f"{part}_std"] = _std(sample)
    if "predictions" in kept and "targets" in kept and len(kept["targets"]):
        cosine = torch.nn.functional.cosine_similarity(
            kept["predictions"].float(), kept["targets"].float(), dim=-1
        )
        values["pred_target_cosine"] = float(cosine.mean())
    return values


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
        images = batch.get("image") if isinstance(batch, dict) else None
        self._images += len(images) if images is not None else 0
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
        if trainer.global_step % self.every_n_steps or not isinstance(batch, dict):
            return
        if "context" not in batch or "targets" not in batch:
            return
        experiment = getattr(trainer.logger, "experiment", None)
        grid = grid_of(trainer, pl_module)
        if not hasattr(experiment, "add_image") or grid is None:
            return
        picture = overlay_masks(
            batch["image"], batch["context"], batch["targets"], grid, self.count
        )
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


def grid_of(trainer: L.Trainer, pl_module: L.LightningModule) -> int | None:
    """The patch grid's side: the mask generator's, else the trained network's."""
    collate = getattr(getattr(trainer, "datamodule", None), "collate", None)
    generator = getattr(collate, "generator", None)
    if generator is not None:
        return int(generator.grid_size)
    net = trained_network(pl_module)[1]
    return int(net.grid_size) if hasattr(net, "grid_size") else None


class OnlineProbe(L.Callback):
    """Every ``every_n_steps`` steps, a leave-one-out kNN probe of the trained encoder on
    a small labelled task (``monitor/knn_macro_f1``, ``monitor/knn_accuracy``): features
    of up to ``max_images`` train_val images (mean of the patch tokens, L2-normalised),
    each image classified by cosine vote of its ``k`` nearest other images. A rising curve
    says the features are learning something a probe can use, long before the run ends.

    Images are fed as the student sees its batches: its input size, standardised with
    the corpus statistics when the DataModule measured them.

    Args:
        task: a task folder (UltraBench layout, e.g. ``data/synthetic/task``).
        every_n_steps: probe every this many steps (and at the first step).
        max_images: images used (spread evenly over train_val).
        k: neighbours that vote.
        synthesize_if_missing: write the synthetic lesion task at ``task`` if it is not
            there (the demo's). Otherwise a missing task is warned about and the probe
            is off: a monitor does not stop a run.
    """

    def __init__(
        self,
        task: str,
        every_n_steps: int = 500,
        max_images: int = 512,
        k: int = 20,
        synthesize_if_missing: bool = False,
    ) -> None:
        self.task, self.every_n_steps = task, every_n_steps
        self.synthesize_if_missing = synthesize_if_missing
        self.max_images, self.k = max_images, k
        self.images: Tensor | None = None
        self.labels: Tensor | None = None
        self.num_classes = 0
        self.last: dict[str, float] = {}

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Read the task's images once, at the encoder's size and the corpus's statistics."""
        from usjepa.data.tasks import ProbeDataModule

        encoder = trained_network(pl_module)[1]
        dm = getattr(trainer, "datamodule", None)
        mean, std = getattr(dm, "mean", None), getattr(dm, "std", None)
        task = ProbeDataModule(
            self.task,
            img_size=encoder.img_size,
            mean=mean,
            std=std,
            synthesize_if_missing=self.synthesize_if_missing,
        )
        if not task.exists():
            rank_zero_warn(
                f"OnlineProbe: no task at {self.task} (no split files); the online probe is "
                "off for this run. Build one (`usjepa data build-task`, `usjepa data "
                "make-task`) or point the callback's init_args.task at a task folder"
            )
            return
        if trainer.is_global_zero:
            task.prepare_data()
        trainer.strategy.barrier()
        task.setup()
        labels = torch.tensor(task.labels("train_val"))
        picks = torch.linspace(0, len(labels) - 1, min(self.max_images, len(labels))).long()
        rows = torch.utils.data.Subset(task.dataloader("train_val").dataset, picks.tolist())
        loader = torch.utils.data.DataLoader(rows, batch_size=64)  # only the images probed
        self.images = torch.cat([b["image"] for b in loader])
        self.labels = labels[picks]
        self.num_classes = task.num_classes

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Probe and log when due."""
        if (trainer.global_step - 1) % self.every_n_steps or self.images is None:
            return
        assert self.labels is not None
        encoder = trained_network(pl_module)[1]
        was_training = encoder.training
        encoder.eval()
        with torch.no_grad():
            feats = []
            for start in range(0, len(self.images), 64):
                chunk = self.images[start : start + 64].to(pl_module.device)
                tokens = encoder(chunk)[:, encoder.num_prefix_tokens :]
                feats.append(torch.nn.functional.normalize(tokens.mean(1).float(), dim=-1))
        encoder.train(was_training)
        self.last = knn_scores(torch.cat(feats).cpu(), self.labels, self.num_classes, self.k)
        log_values(trainer, self.last)


def knn_scores(features: Tensor, labels: Tensor, num_classes: int, k: int = 20) -> dict:
    """Leave-one-out kNN on L2-normalised ``[N, D]`` features: each row's class is the
    cosine-weighted vote of its ``k`` nearest other rows; macro F1 and accuracy."""
    from torchmetrics.functional.classification import multiclass_f1_score

    sims = features @ features.t()
    sims.fill_diagonal_(-float("inf"))  # never one's own neighbour
    top, idx = sims.topk(min(k, len(features) - 1), dim=1)
    votes = torch.zeros(len(features), num_classes)
    votes.scatter_add_(1, labels[idx], top.clamp(min=0) + 1e-6)
    pred = votes.argmax(1)
    f1 = multiclass_f1_score(pred, labels, num_classes, average="macro")
    return {"knn_macro_f1": float(f1), "knn_accuracy": float((pred == labels).float().mean())}
