"""LinearProbeModule: a grid of linear heads trained together on frozen features."""

from __future__ import annotations

import itertools

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.functional.classification import multiclass_f1_score

from usjepa.methods.optim import warmup_cosine


class LinearProbeModule(L.LightningModule):
    """Linear heads over (pooling x learning rate x weight decay), trained in one pass.

    Every head sees the same batches; heads share no parameters, so summing their losses
    trains each exactly as if alone, at the cost of one loop. Features are expected
    standardised (zero mean, unit variance on the training split).

    Args:
        in_dims: feature width per pooling, e.g. ``{"cls": 192, "mean": 192}``.
        num_classes: number of classes.
        lrs, weight_decays: the grid; each (pooling, lr, wd) is one head.
        init_seed: seed for head initialisation (private RNG).
    """

    def __init__(
        self,
        in_dims: dict[str, int],
        num_classes: int,
        lrs: tuple[float, ...] = (1e-3, 3e-3, 1e-2),
        weight_decays: tuple[float, ...] = (1e-4, 1e-2),
        init_seed: int = 0,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.specs = list(itertools.product(sorted(in_dims), lrs, weight_decays))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            self.heads = nn.ModuleList(nn.Linear(in_dims[p], num_classes) for p, _, _ in self.specs)

    def logits(self, features: dict[str, Tensor]) -> Tensor:
        """``[G, N, C]`` logits of every head."""
        return torch.stack([head(features[p]) for head, (p, _, _) in zip(self.heads, self.specs)])

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        logits = self.logits(batch)
        target = batch["label"].expand(len(self.heads), -1)
        loss = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="mean")
        self.log("probe/train_loss", loss, batch_size=len(batch["label"]))
        return loss * len(self.heads)  # per-head mean loss, summed over heads

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        f1 = self.head_f1(batch, batch["label"])
        self.log("probe/val_best_macro_f1", f1.max(), batch_size=len(batch["label"]))

    @torch.no_grad()
    def head_f1(self, features: dict[str, Tensor], labels: Tensor) -> Tensor:
        """``[G]`` macro F1 of every head on the given features."""
        preds = self.logits(features).argmax(-1)
        return torch.stack(
            [multiclass_f1_score(p, labels, self.num_classes, average="macro") for p in preds]
        )

    def configure_optimizers(self):  # type: ignore[no-untyped-def]
        groups = [
            {"params": head.parameters(), "lr": lr, "weight_decay": wd}
            for head, (_, lr, wd) in zip(self.heads, self.specs)
        ]
        optimizer = torch.optim.AdamW(groups)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: warmup_cosine(s, total, total // 20)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
