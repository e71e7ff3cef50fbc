"""The extension contracts: a user's encoder, mask generator, loss and objective written
against them (``typed_extension.py``, which ``make lint`` checks with mypy --strict)
train; networks that miss a contract are refused by name."""

import pytest
import torch

from tests.conftest import tiny_encoder, tiny_predictor
from tests.methods.typed_extension import (
    CosineLoss,
    FrozenTokenTargets,
    PatchEncoder,
    TopAndBottom,
    draw,
    student_of,
)
from usjepa.masks import MaskGenerator
from usjepa.methods import JEPAModule, PretrainModule, SALTModule
from usjepa.models import ContextEncoder, Predictor, TokenEncoder


def test_a_user_objective_on_a_user_encoder_trains():
    module = FrozenTokenTargets(PatchEncoder(), tiny_predictor(), PatchEncoder())
    assert isinstance(TopAndBottom(), MaskGenerator)
    assert isinstance(student_of(module), ContextEncoder)
    assert isinstance(module.loss_fn, CosineLoss)  # the injected loss is the one used
    assert module.trained_network is module.student
    batch = draw(TopAndBottom(), torch.rand(2, 1, 32, 32))
    optimizer = torch.optim.AdamW(module.student.parameters(), lr=1e-2)
    losses = []
    for _ in range(5):
        loss, extras = module.step_loss(batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss))
    assert losses[-1] < losses[0]
    assert all(p.grad is None for p in module.teacher.parameters())  # type: ignore[attr-defined]


def test_networks_that_miss_a_contract_are_refused_by_name():
    refused = r"student \(Linear\) does not meet the ContextEncoder contract: it lacks "
    with pytest.raises(TypeError, match=refused + "embed_dim, grid_size"):
        SALTModule(torch.nn.Linear(4, 4), tiny_predictor(), tiny_encoder(1))
    with pytest.raises(TypeError, match="predictor must be an nn.Module"):
        SALTModule(tiny_encoder(0), "predictor", tiny_encoder(1))
    assert isinstance(tiny_encoder(0), (ContextEncoder, TokenEncoder))
    assert isinstance(tiny_predictor(), Predictor)


def test_the_hooks_a_method_must_write_are_abstract():
    assert {"step", "trained_network"} <= PretrainModule.__abstractmethods__
    assert "compute_targets" in JEPAModule.__abstractmethods__
    with pytest.raises(TypeError, match="abstract"):
        JEPAModule(tiny_encoder(0), tiny_predictor())  # type: ignore[abstract]


def test_a_loss_is_a_module_or_its_name():
    student, predictor, teacher = tiny_encoder(0), tiny_predictor(), tiny_encoder(1)
    huber = torch.nn.HuberLoss(delta=0.5)
    assert SALTModule(student, predictor, teacher, loss=huber).loss_fn is huber
    named = SALTModule(tiny_encoder(0), tiny_predictor(), tiny_encoder(1), loss="l1")
    assert isinstance(named.loss_fn, torch.nn.L1Loss)
    with pytest.raises(ValueError, match="unknown loss 'cosine'"):
        SALTModule(tiny_encoder(0), tiny_predictor(), tiny_encoder(1), loss="cosine")
