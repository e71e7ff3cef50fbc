"""The online probe: kNN macro F1 of the trained encoder on a small labelled task while
pretraining runs."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from usjepa.callbacks.monitors import log_values
from usjepa.methods.base import network_of


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

        encoder = network_of(pl_module)
        dm = getattr(trainer, "datamodule", None)
        mean, std = getattr(dm, "mean", None), getattr(dm, "std", None)
        task = ProbeDataModule(
            self.task,
            img_size=int(getattr(encoder, "img_size")),  # noqa: B009 (nn.Module types it as a tensor)
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
        encoder = network_of(pl_module)
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


def knn_scores(features: Tensor, labels: Tensor, num_classes: int, k: int = 20) -> dict[str, Any]:
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
