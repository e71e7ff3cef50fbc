"""The training step makes no host read of device memory once its batch carries the plan
made on the host (on a GPU, no host-device synchronisation), with unchanged results."""

import math

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from tests.conftest import tiny_encoder, tiny_predictor
from tests.methods.test_methods import _batch, _Batches, _quiet_trainer
from usjepa.methods import IJEPAModule, SALTModule
from usjepa.methods.base import LossDiverged, LossWatch
from usjepa.methods.jepa import StepPlan
from usjepa.models.host_reads import HostReads


def _module(method: str, one_pass: bool, **kw):
    predictor = tiny_predictor()
    predictor.one_pass = one_pass
    if method == "salt":
        return SALTModule(tiny_encoder(1), predictor, tiny_encoder(2), **kw)
    return IJEPAModule(tiny_encoder(1), predictor, **kw)


def test_host_reads_counts_what_a_gpu_would_wait_for():
    x = torch.randn(4, 3)
    with HostReads() as reads:
        x.index_select(0, torch.tensor([0, 2]))  # index from the host: no read
        x[torch.tensor([1, 3])]
        x[x > 0]  # boolean index: its output size is read
        bool((x > 0).all())
        (x > 0).nonzero()
    assert reads.ops == ["aten.index", "aten._local_scalar_dense", "aten.nonzero"]


def _check_planned_against_unplanned(module, batch, trained):
    """The planned step makes no host read, the unplanned one some; losses, extras and
    the gradients of ``trained`` (a network of ``module``) are bit-identical."""
    with HostReads() as unplanned:
        loss, extras = module.step_loss(dict(batch))
        loss.backward()
    grads = [p.grad.clone() for p in trained.parameters()]
    module.zero_grad()
    planned_batch = module.on_before_batch_transfer(dict(batch), 0)
    with HostReads() as planned:
        planned_loss, planned_extras = module.step_loss(planned_batch)
        planned_loss.backward()
    assert planned.count == 0, planned.ops
    assert unplanned.count > 0  # the same step without the plan waits on the device
    assert torch.equal(loss, planned_loss)
    for name, value in extras.items():
        assert torch.equal(value, planned_extras[name]), name
    for before, p in zip(grads, trained.parameters()):
        assert torch.equal(before, p.grad)
    return planned_batch["plan"]


@pytest.mark.parametrize("one_pass", [False, True])
@pytest.mark.parametrize("method", ["salt", "ijepa"])
@pytest.mark.parametrize("target_norm", ["layer", "layer_batch"])
def test_planned_step_reads_nothing_and_changes_nothing(method, one_pass, target_norm):
    module = _module(method, one_pass, target_norm=target_norm)
    batch = _batch()
    assert (batch["context"] < 0).any()  # per-image draws: padded sets
    plan = _check_planned_against_unplanned(module, batch, module.student)
    assert isinstance(plan, StepPlan)


def test_layer_batch_targets_standardise_over_real_slots_only():
    module = _module("salt", False, target_norm="layer_batch")
    batch = _batch()
    targets = batch["targets"].clone()
    targets[:, :, -1] = -1  # drop one slot per block
    picked = module.compute_targets(batch["image"], targets)
    real = picked[targets >= 0]
    assert torch.allclose(real.mean(0), torch.zeros(real.shape[1]), atol=1e-5)
    assert torch.allclose(real.std(0), torch.ones(real.shape[1]), atol=1e-4)


def test_trainer_moves_the_plan_with_the_batch(tmp_path):
    module = _module("salt", True)
    seen = []

    class Check(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append(type(batch.get("plan")).__name__)

    trainer = _quiet_trainer(tmp_path, max_steps=2, callbacks=[Check()])
    trainer.fit(module, DataLoader(_Batches([_batch(seed=i) for i in range(2)]), batch_size=None))
    assert seen == ["StepPlan", "StepPlan"]


class _InFlight:
    """A copy to the host that lands only when waited for."""

    def query(self) -> bool:
        return False

    def synchronize(self) -> None:
        pass


def test_loss_watch_reads_in_flight_losses_once_landed():
    watch = LossWatch("SALTModule", deferred=True)
    watch.watch(torch.tensor(0.5), step=0)  # a host loss lands at once
    assert not watch.pending
    watch.pending.append((1, torch.tensor(math.nan), _InFlight()))
    watch.watch(torch.tensor(0.4), step=2)  # step 1 has not landed: no wait, no error
    assert len(watch.pending) == 2
    with pytest.raises(LossDiverged, match="loss became nan at global step 1"):
        watch.flush()
    assert not watch.pending


def test_no_checkpoint_of_diverged_weights_is_written(tmp_path):
    module = _module("salt", True)
    trainer = _quiet_trainer(tmp_path, max_steps=1)
    trainer.fit(module, DataLoader(_Batches([_batch()]), batch_size=None))
    module._loss_watch.pending.append((1, torch.tensor(math.inf), _InFlight()))
    path = tmp_path / "last.ckpt"
    with pytest.raises(LossDiverged, match="loss became inf"):
        trainer.save_checkpoint(path)
    assert not path.exists()
    trainer.save_checkpoint(path)  # once read, saving works again
    assert path.exists()


def test_planned_mae_step_reads_nothing_and_changes_nothing():
    from usjepa.masks import RandomMaskGenerator
    from usjepa.methods import MAEModule
    from usjepa.methods.mae import MAEPlan
    from usjepa.models import MAEDecoder

    module = MAEModule(tiny_encoder(1), MAEDecoder(4, 32, 64, width=32, depth=1, num_heads=2))
    batch = _batch(RandomMaskGenerator, n=4)
    # pad both sets, as per-image draws of different sizes are
    batch["context"] = torch.cat(
        [batch["context"], torch.full_like(batch["context"][:, :2], -1)], 1
    )
    batch["targets"] = torch.cat(
        [batch["targets"], torch.full_like(batch["targets"][..., :3], -1)], -1
    )
    plan = _check_planned_against_unplanned(module, batch, module.encoder)
    assert isinstance(plan, MAEPlan)


def test_a_plan_moves_whole_with_its_host_flags():
    module = _module("salt", True)
    plan = module.plan_step(*(_batch()[k] for k in ("context", "targets")))
    moved = plan.to("meta")
    tensors = [moved.target_rows, moved.student.valid, moved.student.rows]
    tensors += [moved.predictor.tokens.rows, moved.predictor.union, moved.predictor.slot]
    assert all(t.device.type == "meta" for t in tensors)
    assert moved.student.full is plan.student.full and moved.predictor.tokens.full is False
