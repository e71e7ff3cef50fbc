"""Checkpoint on SIGTERM, so that a preempted run loses no step."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback, ModelCheckpoint


class CheckpointOnSigterm(Callback):
    """When the process gets SIGTERM (a scheduler's preemption, a plain ``kill``), save
    ``last.ckpt`` after the step in progress; Lightning then stops the run. Resume with
    ``--ckpt_path <that file>``: the data order, crops, masks, optimiser and schedules
    continue exactly (tests/methods/test_resume.py).

    Args:
        path: where to save; default ``last.ckpt`` in the ModelCheckpoint's folder, else
            ``<default_root_dir>/checkpoints/last.ckpt``.
    """

    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self.saved: Path | None = None

    def target(self, trainer: L.Trainer) -> Path:
        """The checkpoint file this callback writes."""
        if self.path:
            return Path(self.path)
        ckpt = trainer.checkpoint_callback
        if isinstance(ckpt, ModelCheckpoint) and ckpt.dirpath:
            return Path(ckpt.dirpath) / "last.ckpt"
        return Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: object,
        batch: object,
        batch_idx: int,
    ) -> None:
        """Save once a SIGTERM has arrived (Lightning raises right after this hook)."""
        if getattr(trainer, "received_sigterm", False) and self.saved is None:
            self.saved = self.target(trainer)
            trainer.save_checkpoint(self.saved)
            print(
                f"SIGTERM: saved {self.saved} at step {trainer.global_step}; resume with "
                f"--ckpt_path {self.saved}",
                flush=True,
            )
