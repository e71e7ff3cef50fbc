"""Collapse indicators of a JEPA run, and the monitor that logs them and warns.

A JEPA run can collapse quietly: the loss keeps falling while the student's embeddings
shrink to a few directions. :class:`CollapseMonitor` logs the signals that show it early
(effective rank, spread, prediction-target cosine) and warns when one crosses its floor.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from usjepa.callbacks.monitors import log_values


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
    rising to 13; ``benchmarks/results/quality/demo_monitors/demo_monitors.md``). Freshly
    initialised predictors give low-rank outputs, hence the warm-up.

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

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Every ``every_n_steps`` steps, compute and log the indicators of the outputs
        the training step returned (``student`` with ``context``, ``predictions``,
        ``targets``; see :meth:`usjepa.methods.JEPAModule.step`), and warn on collapse."""
        if not isinstance(outputs, dict) or (trainer.global_step - 1) % self.every_n_steps:
            return
        kept = step_outputs(outputs)
        if not kept:
            return
        values = indicators(kept, self.max_rows)
        self.last = values
        log_values(trainer, values)
        if trainer.global_step >= self.warmup_steps:
            self.warn(values, kept)

    def below_floor(self, values: dict[str, float], widths: dict[str, int]) -> dict[str, bool]:
        """For each indicator read, whether it is under its floor; ``widths`` gives the
        width of each part's outputs (``student``, ``predictor``, ``target``)."""
        reference = values.get("target_rankme")
        low: dict[str, bool] = {}
        for part, _ in _PARTS:
            if f"{part}_rankme" not in values:
                continue
            width = widths[part]
            floor = self.min_rank_fraction * width
            if part != "target" and reference is not None:
                floor = max(floor, self.min_rank_vs_targets * reference)
            low[f"{part}_rankme"] = values[f"{part}_rankme"] < floor
            low[f"{part}_std"] = values[f"{part}_std"] < self.min_std / width**0.5
        return low

    def warn(self, values: dict[str, float], kept: dict[str, Tensor]) -> None:
        """Warn (once, until it recovers) about an indicator under its floor."""
        widths = {part: kept[key].shape[-1] for part, key in _PARTS if key in kept}
        reference = values.get("target_rankme")
        for name, low in self.below_floor(values, widths).items():
            if not low:
                self.warned.discard(name)
                continue
            if name in self.warned:
                continue
            self.warned.add(name)
            part = name.rsplit("_", 1)[0]
            against = (
                f", targets' rank {reference:.3g}"
                if reference and name.endswith("_rankme") and part != "target"
                else ""
            )
            rank_zero_warn(
                f"collapse warning: {name} = {values[name]:.4g} (width {widths[part]}"
                f"{against}); the embeddings are shrinking to a few directions. Check the "
                "learning rate, the target normalisation (target_norm) and the masks"
            )


#: (indicator prefix, kept output) of the outputs whose collapse is watched
_PARTS = (("student", "student"), ("predictor", "predictions"), ("target", "targets"))


def step_outputs(outputs: dict[str, Any]) -> dict[str, Tensor]:
    """The ``[N, D]`` rows the indicators read from a JEPA step's outputs: the student's
    real context tokens (``student [B, K, D]`` where ``context [B, K] >= 0``), the
    predictions and the targets; those it lacks are left out."""
    kept: dict[str, Tensor] = {}
    student, context = outputs.get("student"), outputs.get("context")
    if isinstance(student, Tensor) and isinstance(context, Tensor):
        kept["student"] = student[context >= 0]
    for key in ("predictions", "targets"):
        if isinstance(outputs.get(key), Tensor):
            kept[key] = outputs[key]
    return kept


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
