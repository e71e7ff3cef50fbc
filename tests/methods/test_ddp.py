"""DDP on two CPU processes (gloo): ranks share each epoch without overlap, draw their
own crops and masks, and end with identical parameters."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from tests.conftest import tiny_encoder, tiny_predictor
from usjepa.data import CorpusDataModule
from usjepa.masks import MultiBlockMaskGenerator
from usjepa.methods import SALTModule


class Witness(Callback):
    """Writes what this rank saw and where its parameters ended, for the test to read."""

    def __init__(self, out: str) -> None:
        self.out, self.rows, self.masks = out, [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.rows += batch.rows.tolist()
        self.masks.append(batch.context.tolist())

    def on_train_end(self, trainer, pl_module) -> None:
        params = torch.cat([p.detach().double().flatten() for p in pl_module.parameters()])
        record = {"rows": self.rows, "masks": self.masks, "params": params.tolist()}
        with open(f"{self.out}/rank{trainer.global_rank}.json", "w") as f:
            json.dump(record, f)


@pytest.mark.slow
def test_two_ranks_split_the_epoch_draw_their_own_masks_and_stay_in_sync(corpus_dir, tmp_path):
    dm = CorpusDataModule(
        str(corpus_dir / "manifest.parquet"),
        MultiBlockMaskGenerator(4),
        img_size=32,
        batch_size=4,
        seed=3,
    )
    module = SALTModule(tiny_encoder(1), tiny_predictor(), tiny_encoder(2))
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        max_epochs=1,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Witness(str(tmp_path))],
    )
    trainer.fit(module, dm)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    rows = [r["rows"] for r in ranks]
    assert rows[0] and len(rows[0]) == len(rows[1])
    assert not set(rows[0]) & set(rows[1])  # no frame twice in the epoch
    assert len(set(rows[0]) | set(rows[1])) == 2 * len(rows[0])
    dm.setup("fit")
    per_rank = len(dm.train_set) // 2
    assert len(rows[0]) == per_rank // 4 * 4  # every full batch of each rank's share
    assert ranks[0]["masks"] != ranks[1]["masks"]  # each rank its own masks
    assert ranks[0]["params"] == ranks[1]["params"]  # gradients all-reduced
