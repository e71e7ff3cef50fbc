"""Linear layers through oneDNN on the CPU (usjepa.models.cpu_matmul): the same values
and gradients as ``F.linear``, the backend choice, and the blocks that use it."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block
from torch import nn

from usjepa.errors import ConfigError
from usjepa.models import cpu_matmul
from usjepa.models.tokens import TokenSet, run_blocks

needs_onednn = pytest.mark.skipif(not cpu_matmul.available(), reason="torch built without oneDNN")


@pytest.fixture(autouse=True)
def _reset_backend():
    yield
    cpu_matmul.set_backend(None)


def _grads(fn, x, weight, bias):
    leaves = [t.detach().clone().requires_grad_(True) for t in (x, weight, bias)]
    out = fn(*leaves)
    (out * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
    return [out.detach()] + [t.grad for t in leaves]


def _close(a, b, rtol=1e-5):
    scale = b.abs().max().clamp(min=1.0)
    assert (a - b).abs().max() <= rtol * scale * 10, float((a - b).abs().max())


@needs_onednn
@pytest.mark.parametrize("shape", [(5, 7, 24), (13, 24), (2, 3, 4, 24)])
def test_onednn_linear_matches_f_linear(shape):
    cpu_matmul.set_backend("onednn")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=g)
    weight, bias = torch.randn(40, 24, generator=g), torch.randn(40, generator=g)
    ours = _grads(cpu_matmul.linear, x, weight, bias)
    ref = _grads(F.linear, x, weight, bias)
    for a, b in zip(ours, ref):
        assert a.shape == b.shape
        _close(a, b)


@needs_onednn
def test_onednn_gradients_only_where_asked_and_without_bias():
    cpu_matmul.set_backend("onednn")
    x = torch.randn(6, 16, requires_grad=True)
    weight = torch.randn(8, 16)  # frozen
    out = cpu_matmul.linear(x, weight)
    assert out.grad_fn is not None and "OneDNN" in type(out.grad_fn).__name__
    out.sum().backward()
    _close(x.grad, torch.ones(6, 8) @ weight)
    assert weight.grad is None
    with torch.no_grad():  # no graph: the product alone
        assert cpu_matmul.linear(x, weight).grad_fn is None


def test_other_dtypes_autocast_and_blas_are_f_linear_bit_for_bit():
    g = torch.Generator().manual_seed(1)
    x, weight, bias = torch.randn(4, 9, 16, generator=g), torch.randn(8, 16, generator=g), None
    cpu_matmul.set_backend("onednn" if cpu_matmul.available() else "blas")
    xb, wb = x.bfloat16(), weight.bfloat16()
    assert not cpu_matmul.uses_onednn(xb, wb)
    assert torch.equal(cpu_matmul.linear(xb, wb), F.linear(xb, wb))
    with torch.autocast("cpu", torch.bfloat16):
        assert not cpu_matmul.uses_onednn(x, weight)
        assert torch.equal(cpu_matmul.linear(x, weight, bias), F.linear(x, weight, bias))
    cpu_matmul.set_backend("blas")
    assert cpu_matmul.backend() == "blas" and not cpu_matmul.uses_onednn(x, weight)
    assert torch.equal(cpu_matmul.linear(x, weight, bias), F.linear(x, weight, bias))


def test_auto_keeps_onednn_only_when_clearly_faster(monkeypatch):
    monkeypatch.setattr(cpu_matmul, "available", lambda: True)
    for speedup, expected in [(1.0, "blas"), (1.2, "blas"), (2.2, "onednn")]:
        monkeypatch.setattr(cpu_matmul, "onednn_speedup", lambda s=speedup: s)
        cpu_matmul.set_backend("auto")
        assert cpu_matmul.backend() == expected
    monkeypatch.setattr(cpu_matmul, "available", lambda: False)
    cpu_matmul.set_backend("onednn")
    assert cpu_matmul.backend() == "blas"  # asked for, but this torch has no oneDNN


def test_torch_blas_unless_asked(monkeypatch):
    monkeypatch.delenv("USJEPA_CPU_MATMUL", raising=False)
    cpu_matmul.set_backend(None)
    assert cpu_matmul.backend() == "blas"


def test_mode_from_the_environment_and_a_bad_mode(monkeypatch):
    monkeypatch.setenv("USJEPA_CPU_MATMUL", "blas")
    cpu_matmul.set_backend(None)
    assert cpu_matmul.backend() == "blas"
    monkeypatch.setenv("USJEPA_CPU_MATMUL", "mkl")
    cpu_matmul.set_backend(None)
    with pytest.raises(ConfigError, match="USJEPA_CPU_MATMUL='mkl'.*onednn"):
        cpu_matmul.backend()
    with pytest.raises(ConfigError, match="set_backend"):
        cpu_matmul.set_backend("fast")


def test_primitive_cache_capped_on_import():
    # set on import unless the environment chose a capacity (then left as it is)
    assert os.environ.get("ONEDNN_PRIMITIVE_CACHE_CAPACITY")
    assert os.environ.get("LRU_CACHE_CAPACITY")


@needs_onednn
@pytest.mark.parametrize("mode", ["none", "selective", "full"])
@pytest.mark.parametrize("padded", [False, True])
def test_blocks_through_onednn_match_blas(mode, padded):
    """timm blocks (plain, packed, selective, checkpointed) give the same outputs and
    gradients with their linear layers in oneDNN as in torch's BLAS."""
    torch.manual_seed(0)
    blocks = nn.Sequential(*[Block(48, 4, qkv_bias=True) for _ in range(2)])
    x = torch.randn(3, 10, 48)
    valid = None
    if padded:
        v = torch.ones(3, 10, dtype=torch.bool)
        v[1, 4:6] = False
        valid = TokenSet.of(v)
    runs = {}
    for backend in ("blas", "onednn"):
        cpu_matmul.set_backend(backend)
        blocks.zero_grad(set_to_none=True)
        xi = x.clone().requires_grad_(True)
        out = run_blocks(blocks, xi, valid, mode)
        if valid is not None:
            out = out * valid.valid[..., None]
        (out * torch.linspace(-1, 1, 48)).sum().backward()
        runs[backend] = [out.detach(), xi.grad] + [p.grad for p in blocks.parameters()]
    for a, b in zip(runs["onednn"], runs["blas"]):
        _close(a, b, rtol=1e-4)


@needs_onednn
def test_blocks_call_onednn_when_chosen(monkeypatch):
    calls = []
    product = cpu_matmul._product
    monkeypatch.setattr(cpu_matmul, "_product", lambda *a: calls.append(1) or product(*a))
    blocks = nn.Sequential(Block(32, 2))
    cpu_matmul.set_backend("blas")
    run_blocks(blocks, torch.randn(2, 5, 32), None)
    assert not calls
    cpu_matmul.set_backend("onednn")
    x = torch.randn(2, 5, 32, requires_grad=True)
    run_blocks(blocks, x, None).sum().backward()
    assert len(calls) == 4 + 2 * 4  # qkv, proj, fc1, fc2; input and weight gradients


@needs_onednn
def test_flop_counter_counts_the_onednn_products():
    from torch.utils.flop_counter import FlopCounterMode

    blocks = nn.Sequential(Block(32, 2))
    counts = {}
    for backend in ("blas", "onednn"):
        cpu_matmul.set_backend(backend)
        x = torch.randn(2, 5, 32, requires_grad=True)
        with FlopCounterMode(display=False) as counter:
            run_blocks(blocks, x, None).sum().backward()
        counts[backend] = counter.get_total_flops()
    assert counts["onednn"] == counts["blas"] > 0
