"""Same seed, same losses; a resumed run continues exactly as an uninterrupted one."""

from __future__ import annotations

import os
import signal

import lightning as L
import numpy as np
import pytest
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from tests.conftest import tiny_encoder, tiny_predictor
from usjepa.data import CorpusDataModule
from usjepa.data.sampling import EpochSampler
from usjepa.masks import MultiBlockMaskGenerator
from usjepa.methods import SALTModule


class Losses(Callback):
    def __init__(self) -> None:
        self.values: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.values.append(float(outputs["loss"]))


class Killed(Exception):
    pass


class KillAt(Callback):
    """Dies like a SIGKILL: no hook, no checkpoint, at the start of step ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise Killed


class SigtermAt(Callback):
    """What Lightning's SIGTERM handler does, at the start of step ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            trainer._signal_connector.received_sigterm = True


def fit(
    corpus_dir,
    max_steps,
    *,
    ckpt_dir=None,
    resume=None,
    workers=0,
    every=None,
    kill_at=None,
    extra=(),
    root=None,
    plugins=None,
    shards=None,
):
    L.seed_everything(0)
    dm = CorpusDataModule(
        str(corpus_dir / "manifest.parquet"),
        MultiBlockMaskGenerator(4),
        img_size=32,
        batch_size=4,
        num_workers=workers,
        seed=3,
        shards=shards,
    )
    module = SALTModule(tiny_encoder(1), tiny_predictor(), tiny_encoder(2))
    losses = Losses()
    callbacks: list[Callback] = [losses, *extra] + ([KillAt(kill_at)] if kill_at else [])
    if ckpt_dir is not None:
        callbacks.append(
            ModelCheckpoint(dirpath=ckpt_dir, every_n_train_steps=every, save_top_k=-1)
        )
    trainer = L.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=ckpt_dir is not None,
        limit_val_batches=0,
        callbacks=callbacks,
        default_root_dir=root,
        plugins=plugins,
    )
    trainer.fit(module, dm, ckpt_path=resume)
    return losses.values


def test_same_seed_gives_the_same_first_20_losses_bit_for_bit(corpus_dir):
    first, second = fit(corpus_dir, 20), fit(corpus_dir, 20)
    assert len(first) == 20 and first == second


@pytest.mark.slow
def test_draws_do_not_depend_on_the_number_of_workers(corpus_dir):
    assert fit(corpus_dir, 6) == fit(corpus_dir, 6, workers=2)


def test_resume_mid_epoch_continues_the_uninterrupted_losses(corpus_dir, tmp_path):
    straight = fit(corpus_dir, 20)  # 11 batches an epoch: resume at 7 and cross an epoch
    with pytest.raises(Killed):  # checkpoint at step 7, killed two steps later
        fit(corpus_dir, 20, ckpt_dir=tmp_path, every=7, kill_at=9)
    (ckpt,) = tmp_path.glob("*step=7.ckpt")
    resumed = fit(corpus_dir, 20, resume=str(ckpt))
    assert resumed == straight[7:]


def test_sigterm_saves_a_checkpoint_that_resumes_exactly(corpus_dir, tmp_path):
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from usjepa.callbacks import CheckpointOnSigterm

    straight = fit(corpus_dir, 12)
    saver = CheckpointOnSigterm(str(tmp_path / "last.ckpt"))
    with pytest.raises(SIGTERMException):
        fit(corpus_dir, 12, extra=(SigtermAt(5), saver))
    assert saver.saved == tmp_path / "last.ckpt"
    assert fit(corpus_dir, 12, resume=str(saver.saved)) == straight[6:]


class SignalAt(Callback):
    def __init__(self, step: int, signum: int) -> None:
        self.step, self.signum = step, signum

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


def test_slurm_requeue_signal_saves_and_the_requeued_job_resumes_by_itself(
    corpus_dir, tmp_path, monkeypatch
):
    """Lightning's SLURM path, with the signal sent by hand and ``scontrol`` faked."""
    from lightning.pytorch.plugins.environments import SLURMEnvironment
    from lightning.pytorch.trainer.connectors import signal_connector

    straight = fit(corpus_dir, 12)
    for key, value in {
        "SLURM_NTASKS": "1",
        "SLURM_JOB_ID": "42",
        "SLURM_JOB_NAME": "salt",
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
        "SLURM_NODEID": "0",
    }.items():
        monkeypatch.setenv(key, value)  # fmt: skip
    requeued = []
    monkeypatch.setattr(signal_connector, "call", lambda cmd: requeued.append(cmd) or 0)
    slurm = [SLURMEnvironment(auto_requeue=True, requeue_signal=signal.SIGUSR1)]
    with pytest.raises(Killed):  # SLURM kills the job after the requeue
        fit(corpus_dir, 12, root=tmp_path, plugins=slurm, kill_at=8,
            extra=(SignalAt(5, signal.SIGUSR1),))  # fmt: skip
    assert requeued == [["scontrol", "requeue", "42"]]
    assert [p.name for p in tmp_path.glob("hpc_ckpt_*.ckpt")] == ["hpc_ckpt_1.ckpt"]
    slurm = [SLURMEnvironment(auto_requeue=True, requeue_signal=signal.SIGUSR1)]
    assert fit(corpus_dir, 12, root=tmp_path, plugins=slurm) == straight[5:]


@pytest.fixture(scope="module")
def shards(corpus_dir, tmp_path_factory):
    from usjepa.data.shards import write_shards

    out = tmp_path_factory.mktemp("shards")
    write_shards(str(corpus_dir / "manifest.parquet"), str(out))
    return str(out)


@pytest.mark.slow
def test_resume_from_shards_continues_the_uninterrupted_losses(corpus_dir, shards, tmp_path):
    straight = fit(corpus_dir, 12, shards=shards, workers=1)
    with pytest.raises(Killed):
        fit(corpus_dir, 12, shards=shards, workers=1, ckpt_dir=tmp_path, every=5, kill_at=7)
    (ckpt,) = tmp_path.glob("*step=5.ckpt")
    assert fit(corpus_dir, 12, shards=shards, workers=1, resume=str(ckpt)) == straight[5:]


def test_ranks_split_each_epoch_and_draw_different_seeds():
    ranks = [EpochSampler(10, seed=1, num_replicas=2, rank=r) for r in (0, 1)]
    for epoch in (0, 1):
        for s in ranks:
            s.set_epoch(epoch)
        draws = [list(s) for s in ranks]
        indices = [i for d in draws for i, _ in d]
        assert sorted(indices) == list(range(10))  # each sample once per epoch
        seeds = [seed for d in draws for _, seed in d]
        assert len(set(seeds)) == 10  # no two slots share crop and mask draws
    again = EpochSampler(10, seed=1, num_replicas=2, rank=0)
    assert list(again) == [tuple(x) for x in list(ranks[0].__class__(10, 1, None, 2, 0))]
    assert np.unique([i for i, _ in EpochSampler(10, seed=2)]).size == 10
