"""Linear layers through oneDNN on the CPU (usjepa.models.onednn): the same results as
``F.linear``, the oneDNN op really called, and torch's path wherever it does not apply."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import usjepa.models.onednn as onednn
from tests.conftest import tiny_encoder, tiny_predictor
from tests.methods.test_methods import _batch
from usjepa.methods import IJEPAModule, SALTModule

pytestmark = pytest.mark.skipif(not onednn.available(), reason="no oneDNN in this torch")


@pytest.fixture
def calls(monkeypatch):
    """How many times the oneDNN op ran."""
    seen = {"n": 0}
    real = onednn._OP

    def counted(*args):
        seen["n"] += 1
        return real(*args)

    monkeypatch.setattr(onednn, "_OP", counted)
    return seen


def _grads(fn, x, weight, bias):
    x, weight = x.clone().requires_grad_(True), weight.clone().requires_grad_(True)
    bias = None if bias is None else bias.clone().requires_grad_(True)
    out = fn(x, weight, bias)
    (out * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
    return [out.detach(), x.grad, weight.grad] + ([] if bias is None else [bias.grad])


@pytest.mark.parametrize("shape", [(7, 24), (3, 5, 24)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_forward_and_gradients_match_f_linear(calls, shape, with_bias):
    g = torch.Generator().manual_seed(0)
    x, weight = torch.randn(*shape, generator=g), torch.randn(40, 24, generator=g)
    bias = torch.randn(40, generator=g) if with_bias else None
    ours = _grads(onednn.linear, x, weight, bias)
    assert calls["n"] == 2  # the forward and the input gradient
    for got, want in zip(ours, _grads(F.linear, x, weight, bias), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_inference_calls_the_op_once_and_keeps_no_graph(calls):
    x, weight, bias = torch.randn(4, 6, 8), torch.randn(5, 8), torch.randn(5)
    with torch.inference_mode():
        out = onednn.linear(x, weight, bias)
    assert calls["n"] == 1 and out.grad_fn is None
    torch.testing.assert_close(out, F.linear(x, weight, bias))


def test_bf16_inference_matches_within_bf16_rounding(calls):
    if not onednn._BF16:
        pytest.skip("oneDNN has no bf16 kernels on this CPU")
    x, weight, bias = (
        t.bfloat16() for t in (torch.randn(9, 32), torch.randn(16, 32), torch.randn(16))
    )
    with torch.no_grad():
        out = onednn.linear(x, weight, bias)
    assert calls["n"] == 1 and out.dtype is torch.bfloat16
    torch.testing.assert_close(out.float(), F.linear(x, weight, bias).float(), rtol=2e-2, atol=5e-2)


def test_torch_path_where_onednn_does_not_apply(calls):
    weight = torch.randn(5, 8)
    onednn.linear(torch.randn(3, 8, dtype=torch.float64), weight.double())  # float64
    onednn.linear(torch.randn(8), weight)  # a single vector
    with torch.autocast("cpu", torch.bfloat16):  # autocast casts as F.linear would
        out = onednn.linear(torch.randn(3, 8), weight)
    assert out.dtype is torch.bfloat16
    assert calls["n"] == 0


def test_use_onednn_swaps_plain_linears_only_and_keeps_keys():
    class Tagged(nn.Linear):
        pass

    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), Tagged(4, 4), nn.Sequential(nn.Linear(4, 2)))
    keys = list(model.state_dict())
    assert onednn.use_onednn(model) == 2
    assert [type(m).__name__ for m in model.modules() if isinstance(m, nn.Linear)] == [
        "OneDNNLinear",
        "Tagged",
        "OneDNNLinear",
    ]
    assert list(model.state_dict()) == keys


@pytest.mark.parametrize("checkpointing", [False, "selective", "full"])
def test_salt_step_same_loss_and_gradients_through_onednn(calls, checkpointing):
    """The whole SALT step (student, predictor, teacher; the lean blocks of selective
    checkpointing included) gives torch's loss and gradients with oneDNN's products."""
    batch = _batch()
    runs = []
    for cpu_linear in ("torch", "onednn"):
        calls["n"] = 0
        torch.manual_seed(0)  # the predictor draws its initial weights from it
        module = SALTModule(
            tiny_encoder(1), tiny_predictor(), tiny_encoder(2),
            activation_checkpointing=checkpointing, cpu_linear=cpu_linear,
        )  # fmt: skip
        loss, _ = module.step_loss(batch)
        loss.backward()
        grads = [p.grad for p in module.parameters() if p.requires_grad]
        runs.append((calls["n"], loss.detach(), grads))
    (torch_calls, torch_loss, torch_grads), (dnn_calls, dnn_loss, dnn_grads) = runs
    assert torch_calls == 0 and dnn_calls > 0
    torch.testing.assert_close(dnn_loss, torch_loss, rtol=1e-5, atol=1e-6)
    for got, want in zip(dnn_grads, torch_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_the_teacher_and_the_ema_encoder_get_onednn_layers():
    salt = SALTModule(tiny_encoder(1), tiny_predictor(), tiny_encoder(2), cpu_linear="onednn")
    ijepa = IJEPAModule(tiny_encoder(1), tiny_predictor(), cpu_linear="onednn")
    for module in (salt, ijepa):
        linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
        assert linears and all(type(m) is onednn.OneDNNLinear for m in linears)


def test_unknown_choice_is_refused():
    with pytest.raises(ValueError, match="cpu_linear='mkl'; choose torch or onednn"):
        SALTModule(tiny_encoder(1), tiny_predictor(), tiny_encoder(2), cpu_linear="mkl")


@pytest.mark.parametrize("kind", ["norm", "gelu"])
def test_lean_linears_keep_onednn_products(calls, kind):
    """Selective checkpointing's hand-written linears take oneDNN's products too, with
    the gradients of the plain layer."""
    import usjepa.models.lean as lean

    torch.manual_seed(0)
    pre = nn.LayerNorm(16) if kind == "norm" else nn.GELU()
    layer = nn.Linear(16, 12)
    x = torch.randn(2, 5, 16)
    fn = lean.norm_linear if kind == "norm" else lean.gelu_linear
    results = []
    for swap in (False, True):
        if swap:
            onednn.use_onednn(layer)
        layer.zero_grad(set_to_none=True)
        xi = x.clone().requires_grad_(True)
        out = fn(pre, layer, xi, True)
        (out * torch.linspace(-1, 1, 12)).sum().backward()
        results.append([out.detach(), xi.grad, layer.weight.grad, layer.bias.grad])
    assert calls["n"] == 2  # the oneDNN layer's forward and input gradient
    for got, want in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
