"""Probe metrics under DDP: validation F1 is computed over the whole split, gathered from
both ranks, and equals the single-process figure."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from usjepa.eval.linear_probe import FeatureDataModule, LinearProbeModule


def _data(n: int, seed: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 3, (n,), generator=g)
    centres = torch.randn(3, 8, generator=g)
    feats = centres[labels] + 1.5 * torch.randn(n, 8, generator=g)
    return {"cls": feats, "mean": feats.roll(1, dims=1)}, labels


@pytest.mark.slow
def test_gathered_validation_f1_equals_the_single_process_f1():
    train, y = _data(96, 0)
    val, y_val = _data(40, 1)
    module = LinearProbeModule({"cls": 8, "mean": 8}, 3, lrs=(1e-2, 1e-1))
    module.fit(train, y, epochs=5, batch_size=32, seed=0)
    single = float(module.head_f1(val, y_val).max())

    dm = FeatureDataModule(train, y, val, y_val, batch_size=32)
    results = {}
    for devices, strategy in ((1, "auto"), (2, "ddp_spawn")):
        trainer = L.Trainer(
            accelerator="cpu",
            devices=devices,
            strategy=strategy,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        (metrics,) = trainer.validate(module, datamodule=dm, verbose=False)
        results[devices] = metrics["probe/val_best_macro_f1"]
    assert results[1] == pytest.approx(single, abs=1e-6)
    assert results[2] == pytest.approx(single, abs=1e-6)
