"""LinearProbeModule: a grid of linear heads trained together on frozen features.

The heads of one pooling are one weight matrix ``[D, H * C]``: a step is one matrix
product for all of them, and AdamW runs vectorised with a learning rate and a
weight decay per head. Training the whole grid on cached features therefore costs about
as much as training one head (50 heads on 5,000 x 768 features in seconds on a CPU).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.functional.classification import multiclass_f1_score

from usjepa.methods.optim import warmup_cosine


class LinearProbeModule(L.LightningModule):
    """Linear heads over (pooling x learning rate x weight decay), trained in one pass.

    Every head sees the same batches and has its own parameters, learning rate and
    weight decay, so training them together equals training each alone. Features are
    expected standardised (zero mean, unit variance on the training split). Train with
    :meth:`fit` (a plain loop, fastest) or a Lightning ``Trainer`` (same update rule).

    Args:
        in_dims: feature width per pooling, e.g. ``{"cls": 192, "mean": 192}``.
        num_classes: number of classes.
        lrs: the learning rates of the grid; each (pooling, lr, wd) is one head.
        weight_decays: the weight decays of the grid.
        init_seed: seed for head initialisation (private RNG).
        betas: AdamW moments; weight decay is decoupled and applies to weights only.
        eps: AdamW's epsilon.
        warmup_fraction: share of steps with linear LR warmup before the cosine decay.
    """

    def __init__(
        self,
        in_dims: dict[str, int],
        num_classes: int,
        lrs: tuple[float, ...] = (1e-3, 3e-3, 1e-2),
        weight_decays: tuple[float, ...] = (1e-4, 1e-2),
        init_seed: int = 0,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        warmup_fraction: float = 0.05,
    ) -> None:
        super().__init__()
        self.num_classes, self.betas, self.eps = num_classes, betas, eps
        self.warmup_fraction = warmup_fraction
        self.poolings = sorted(in_dims)
        self.weight: nn.ParameterDict
        grid = list(itertools.product(lrs, weight_decays))
        self.specs = [(p, lr, wd) for p in self.poolings for lr, wd in grid]
        gen = torch.Generator().manual_seed(init_seed)
        self.weight = nn.ParameterDict()
        self.bias = nn.ParameterDict()
        for p in self.poolings:
            bound = 1.0 / math.sqrt(in_dims[p])  # nn.Linear's initialisation
            w = (torch.rand(in_dims[p], len(grid) * num_classes, generator=gen) * 2 - 1) * bound
            b = (torch.rand(len(grid) * num_classes, generator=gen) * 2 - 1) * bound
            self.weight[p], self.bias[p] = nn.Parameter(w), nn.Parameter(b)
        self.heads_per_pooling = len(grid)
        # per output column (head-major: head h owns columns h*C .. h*C + C - 1)
        lr = torch.tensor([lr for lr, _ in grid]).repeat_interleave(num_classes)
        wd = torch.tensor([wd for _, wd in grid]).repeat_interleave(num_classes)
        self.column_lr: Tensor
        self.column_wd: Tensor
        self.register_buffer("column_lr", lr, persistent=False)
        self.register_buffer("column_wd", wd, persistent=False)
        self.automatic_optimization = False
        self._state: dict[str, Tensor] = {}
        self._steps, self._total = 0, 1

    def logits(self, features: dict[str, Tensor]) -> Tensor:
        """``[G, N, C]`` logits of every head."""
        h, c = self.heads_per_pooling, self.num_classes
        out = [self._flat(features, p).view(-1, h, c).transpose(0, 1) for p in self.poolings]
        return torch.cat(out)

    def _flat(self, features: dict[str, Tensor], p: str) -> Tensor:
        """``[N, H * C]`` logits of one pooling's heads: one matrix product."""
        return torch.addmm(self.bias[p], features[p], self.weight[p])

    def grid_loss(self, features: dict[str, Tensor], labels: Tensor) -> Tensor:
        """Sum over heads of each head's mean cross-entropy."""
        h, c = self.heads_per_pooling, self.num_classes
        target = labels.repeat_interleave(h)  # rows of [N * H, C] are (sample, head)
        losses = [
            F.cross_entropy(self._flat(features, p).reshape(-1, c), target) * h
            for p in self.poolings
        ]
        return torch.stack(losses).sum()

    @torch.no_grad()
    def _set_grads(self, features: dict[str, Tensor], labels: Tensor) -> None:
        """Gradients of :meth:`grid_loss` in closed form (softmax minus one-hot), without
        autograd's overhead: one matrix product per pooling."""
        h, c = self.heads_per_pooling, self.num_classes
        onehot = F.one_hot(labels, c).to(self.weight[self.poolings[0]].dtype)[:, None]
        for p in self.poolings:
            x = features[p]
            z = self._flat(features, p).view(len(x), h, c)  # softmax over a short last axis:
            z = (z - z.amax(-1, keepdim=True)).exp_()  # done by hand, torch.softmax is slow
            probs = z / z.sum(-1, keepdim=True)
            grad = ((probs - onehot) / len(x)).view(len(x), h * c)
            self.weight[p].grad = x.t() @ grad
            self.bias[p].grad = grad.sum(0)

    @torch.no_grad()
    def _adamw_step(self) -> None:
        """One vectorised AdamW update, per-head LR (warmup + cosine) and weight decay."""
        self._steps += 1
        t = self._steps
        scale = warmup_cosine(t - 1, self._total, int(self.warmup_fraction * self._total))
        b1, b2 = self.betas
        for kind, params in (("w", self.weight), ("b", self.bias)):
            for p, param in params.items():
                grad = param.grad
                if grad is None:
                    continue
                if f"{kind}m/{p}" not in self._state:
                    self._state[f"{kind}m/{p}"] = torch.zeros_like(param)
                    self._state[f"{kind}v/{p}"] = torch.zeros_like(param)
                m, v = self._state[f"{kind}m/{p}"], self._state[f"{kind}v/{p}"]
                m.mul_(b1).add_(grad, alpha=1 - b1)
                v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
                lr = self.column_lr * scale  # broadcasts over the rows of a [D, H * C] weight
                if kind == "w":
                    param.mul_(1 - lr * self.column_wd)
                denom = (v / (1 - b2**t)).sqrt_().add_(self.eps)
                param.sub_(lr * (m / (1 - b1**t)) / denom)
                param.grad = None

    def fit(
        self,
        features: dict[str, Tensor],
        labels: Tensor,
        epochs: int,
        batch_size: int,
        seed: int = 0,
    ) -> LinearProbeModule:
        """Train every head for ``epochs`` over shuffled mini-batches (plain loop)."""
        n = len(labels)
        per_epoch = math.ceil(n / batch_size)
        self._total, self._steps, self._state = epochs * per_epoch, 0, {}
        order = SeededPermutation(n, seed)
        self.train()
        # confident heads push softmax gradients into subnormal floats, which make CPU
        # arithmetic ~20x slower; flushing them to zero changes nothing measurable. The
        # flush flag is per thread, so the (small) products run on this thread alone.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        torch.set_flush_denormal(True)
        try:
            for _ in range(epochs):
                epoch = torch.tensor(list(order))
                for start in range(0, n, batch_size):
                    idx = epoch[start : start + batch_size]
                    self._set_grads({p: features[p][idx] for p in self.poolings}, labels[idx])
                    self._adamw_step()
        finally:
            torch.set_flush_denormal(False)
            torch.set_num_threads(threads)
        return self.eval()

    def on_train_start(self) -> None:
        """Standardise features with the training split's statistics."""
        self._total = max(1, int(self.trainer.estimated_stepping_batches))
        self._steps, self._state = 0, {}

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """Cross-entropy of every head in the grid on one batch."""
        loss = self.grid_loss(batch, batch["label"])
        self.manual_backward(loss)
        self._adamw_step()
        self.log("probe/train_loss", loss / len(self.specs), batch_size=len(batch["label"]))
        return loss

    def on_validation_epoch_start(self) -> None:
        """Start collecting the heads' validation predictions."""
        self._val_preds: list[Tensor] = []
        self._val_labels: list[Tensor] = []

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """Collect each head's predictions; scored over the whole split at epoch end."""
        with torch.no_grad():
            self._val_preds.append(self.logits(batch).argmax(-1))
        self._val_labels.append(batch["label"])

    def on_validation_epoch_end(self) -> None:
        """Macro F1 of every head over the whole validation split, gathered from every
        DDP rank first (F1 of rank-wise halves would not be the split's F1)."""
        preds, labels = torch.cat(self._val_preds, 1), torch.cat(self._val_labels)
        if self.trainer.world_size > 1:
            all_preds, all_labels = self.all_gather(preds), self.all_gather(labels)
            assert isinstance(all_preds, Tensor) and isinstance(all_labels, Tensor)
            preds = all_preds.permute(1, 0, 2).reshape(len(preds), -1)
            labels = all_labels.reshape(-1)
        f1 = torch.stack(
            [multiclass_f1_score(p, labels, self.num_classes, average="macro") for p in preds]
        )
        self.val_head_f1 = f1.cpu()
        self.log("probe/val_best_macro_f1", f1.max(), rank_zero_only=True)

    @torch.no_grad()
    def head_f1(self, features: dict[str, Tensor], labels: Tensor) -> Tensor:
        """``[G]`` macro F1 of every head on the given features."""
        preds = self.logits(features).argmax(-1)
        return torch.stack(
            [multiclass_f1_score(p, labels, self.num_classes, average="macro") for p in preds]
        )

    def configure_optimizers(self) -> None:
        """None: the heads are updated by hand in ``training_step``."""
        return None  # the vectorised AdamW in training_step updates every head


class SeededPermutation(torch.utils.data.Sampler[int]):
    """One seeded random permutation of ``range(n)`` per epoch (one ``randperm`` draw
    each: torch's ``RandomSampler`` draws an extra one per epoch, so the plain loop and a
    DataLoader would drift apart after the first epoch)."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.generator = n, torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.n

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(torch.randperm(self.n, generator=self.generator).tolist())


class _FeatureRows(torch.utils.data.Dataset[Any]):
    def __init__(self, features: dict[str, Tensor], labels: Tensor) -> None:
        self.features, self.labels = features, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {**{p: f[index] for p, f in self.features.items()}, "label": self.labels[index]}


class FeatureDataModule(L.LightningDataModule):
    """Cached features of one task split as a DataModule, so a ``Trainer`` can drive
    :class:`LinearProbeModule`. Batches are ``{pooling: [B, D], "label": [B]}``, shuffled
    by a generator seeded with ``seed`` exactly as :meth:`LinearProbeModule.fit` shuffles,
    so both paths see the same batches.

    Args:
        train, y_train: training features per pooling and labels.
        val, y_val: optional validation features and labels (head F1 is logged).
        batch_size: rows per batch.
        seed: shuffling seed.
    """

    def __init__(
        self,
        train: dict[str, Tensor],
        y_train: Tensor,
        val: dict[str, Tensor] | None = None,
        y_val: Tensor | None = None,
        batch_size: int = 128,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.train, self.y_train, self.val, self.y_val = train, y_train, val, y_val
        self.batch_size, self.seed = batch_size, seed

    def train_dataloader(self) -> torch.utils.data.DataLoader[Any]:
        """Shuffled training features, reshuffled per epoch by a seeded permutation."""
        rows = _FeatureRows(self.train, self.y_train)
        sampler = SeededPermutation(len(rows), self.seed)
        return torch.utils.data.DataLoader(rows, self.batch_size, sampler=sampler)

    def val_dataloader(self) -> torch.utils.data.DataLoader[Any]:
        """Validation features in order."""
        if self.val is None or self.y_val is None:
            return []  # type: ignore[return-value]
        rows = _FeatureRows(self.val, self.y_val)
        return torch.utils.data.DataLoader(rows, len(rows))
