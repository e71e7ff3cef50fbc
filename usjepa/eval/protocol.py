"""The linear-probe protocol: one object carries seeds, poolings, head grid and epochs,
so every encoder, task, label fraction and corruption is probed the same way."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import lightning as L
from torch import Tensor

from usjepa.eval.linear_probe import FeatureDataModule, LinearProbeModule
from usjepa.eval.metrics import classification_scores

Features = dict[str, Tensor]


def standardise(train: Features, *others: Features) -> list[Features]:
    """Scale every pooling's features by the training split's mean and std."""
    stats = {p: (f.mean(0), f.std(0) + 1e-6) for p, f in train.items()}
    return [{p: (f - stats[p][0]) / stats[p][1] for p, f in d.items()} for d in (train, *others)]


@dataclass(frozen=True)
class ProbeProtocol:
    """How a frozen encoder's features are probed (UltraBench-style linear probing).

    For each seed, the grid of linear heads (pooling x learning rate x weight decay) is
    trained on standardised training features, the head with the best validation macro
    F1 is kept and scored on test.

    Attributes:
        seeds: one probe per seed; tables show mean +/- std over them.
        poolings: token poolings tried as part of the grid (``cls``, ``mean``,
            ``cls_mean``).
        lrs: head-grid learning rates.
        weight_decays: head-grid weight decays.
        epochs: head training epochs.
        batch_size: head training batch size.
        engine: ``grid`` trains in :meth:`LinearProbeModule.fit`'s plain loop (fastest);
            ``trainer`` runs the same module and batches through a Lightning ``Trainer``
            (logging, callbacks, devices), with the same result.
    """

    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    poolings: tuple[str, ...] = ("cls", "mean")
    lrs: tuple[float, ...] = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
    weight_decays: tuple[float, ...] = (1e-4, 1e-2, 1e-1, 5e-1)
    epochs: int = 100
    batch_size: int = 128
    engine: Literal["grid", "trainer"] = "grid"

    def __post_init__(self) -> None:
        if self.engine not in ("grid", "trainer"):
            raise ValueError(f"engine {self.engine!r}: use grid or trainer")
        for name in ("seeds", "poolings", "lrs", "weight_decays"):
            if not getattr(self, name):
                raise ValueError(f"ProbeProtocol.{name} is empty; give at least one value")
            object.__setattr__(self, name, tuple(getattr(self, name)))

    def fit(
        self,
        train: Features,
        y_train: Tensor,
        val: Features,
        y_val: Tensor,
        num_classes: int,
        seed: int,
    ) -> tuple[LinearProbeModule, int, Tensor]:
        """The trained head grid (on standardised features), the index of the head best
        on val by macro F1, and every head's val F1. Standardise other features with
        ``standardise(train, other)`` before :meth:`LinearProbeModule.logits`."""
        train_s, val_s = standardise(train, val)
        module = LinearProbeModule(
            {p: f.shape[1] for p, f in train_s.items()},
            num_classes,
            self.lrs,
            self.weight_decays,
            init_seed=seed,
        )
        if self.engine == "grid":
            module.fit(train_s, y_train, self.epochs, self.batch_size, seed)
        else:
            data = FeatureDataModule(train_s, y_train, val_s, y_val, self.batch_size, seed)
            trainer = L.Trainer(
                max_epochs=self.epochs,
                accelerator="cpu",
                logger=False,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
                num_sanity_val_steps=0,
                check_val_every_n_epoch=self.epochs,
            )
            trainer.fit(module, datamodule=data)
            module.eval()
        val_f1 = module.head_f1(val_s, y_val)
        return module, int(val_f1.argmax()), val_f1

    def score(
        self,
        train: Features,
        y_train: Tensor,
        val: Features,
        y_val: Tensor,
        test: Features,
        y_test: Tensor,
        num_classes: int,
        seed: int,
        predictions: list[int] | None = None,
    ) -> dict[str, float | str]:
        """Train the grid for one seed, pick the best head on val, score it on test. The
        chosen head's class for each test image is appended to ``predictions`` when one
        is given (what a bootstrap over test images needs)."""
        module, best, val_f1 = self.fit(train, y_train, val, y_val, num_classes, seed)
        (test,) = standardise(train, test)[1:]
        logits = module.logits(test)[best]
        if predictions is not None:
            predictions.extend(int(c) for c in logits.argmax(dim=1).tolist())
        pooling, lr, wd = module.specs[best]
        return {
            "seed": seed,
            **classification_scores(logits, y_test, num_classes),
            "val_macro_f1": float(val_f1[best]),
            "pooling": pooling,
            "lr": lr,
            "weight_decay": wd,
        }
