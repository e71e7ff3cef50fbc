"""Blocks that recompute their pointwise work (usjepa.models.lean) and a last block that
computes only the positions read (``run_blocks(queries_from=)``)."""

from __future__ import annotations

import pytest
import torch
from timm.models.vision_transformer import Block
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import usjepa.models.lean as lean
from usjepa.models.tokens import TokenSet, run_blocks


def _blocks(n: int = 2, width: int = 48) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(*[Block(width, 4, qkv_bias=True) for _ in range(n)])


def _valid() -> torch.Tensor:
    valid = torch.ones(3, 10, dtype=torch.bool)
    valid[1, 4:6] = False  # padding inside the sequence (a shorter context)
    valid[2, 9] = False
    return valid


def _run(blocks, x, valid, mode, amp=False, queries_from=None, read_from=0):
    """Output and every gradient of a weighted sum of the real output tokens from
    position ``read_from`` on (all of a ``queries_from`` run's output)."""
    blocks.zero_grad(set_to_none=True)
    xi = x.clone().requires_grad_(True)
    with torch.autocast("cpu", torch.bfloat16, enabled=amp):
        out = run_blocks(blocks, xi, valid, mode, queries_from=queries_from)
    if queries_from is None:
        out = out[:, read_from:]
    if valid is not None:
        out = out * valid.valid[:, queries_from or read_from :, None]
    (out.float() * torch.linspace(-1, 1, x.shape[-1])).sum().backward()
    return [out.detach().float(), xi.grad] + [p.grad for p in blocks.parameters()]


def _saved_bytes(fn) -> int:
    """Bytes of the activations autograd keeps for ``fn()``'s backward (parameters not
    counted, each storage once)."""
    storages: dict[int, int] = {}

    def pack(t):
        if not isinstance(t, nn.Parameter):
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(storages.values())


@pytest.mark.parametrize("amp", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_selective_blocks_give_the_same_outputs_and_gradients(amp, padded):
    blocks, x = _blocks(), torch.randn(3, 10, 48)
    valid = TokenSet.of(_valid()) if padded else None
    kept, lean_run = _run(blocks, x, valid, "none", amp), _run(blocks, x, valid, "selective", amp)
    for a, b in zip(lean_run, kept, strict=True):
        assert a.dtype == b.dtype  # gradients in the parameters' dtype, under autocast too
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_selective_blocks_run_by_hand_and_keep_ten_of_sixteen_widths(monkeypatch):
    blocks, x = _blocks(), torch.randn(4, 32, 48, requires_grad=True)
    calls = {"norm": 0, "gelu": 0}
    for name, fn in (("norm", lean._NormLinear), ("gelu", lean._GeluLinear)):
        original = fn.apply
        monkeypatch.setattr(
            fn,
            "apply",
            lambda *a, _o=original, _n=name: (calls.__setitem__(_n, calls[_n] + 1), _o(*a))[1],
        )
    kept = {
        mode: _saved_bytes(lambda m=mode: run_blocks(blocks, x, None, m))
        for mode in ("none", "selective")
    }
    assert calls == {"norm": 4, "gelu": 2}  # both norms and the MLP of both blocks
    # per token a block keeps at least 16 widths of 48 floats (x, norm1(x), q, k, v,
    # attention out, x + attn, norm2(...), 4 of fc1 out, 4 of GELU out); selective drops
    # the norms' and GELU's outputs: 10, plus the attention's per-head statistics
    widths = {mode: kept[mode] / 4 / (4 * 32 * 2) / 48 for mode in kept}  # per token, block
    assert widths["none"] >= 16 and 10 <= widths["selective"] < 10.6, widths


def test_selective_falls_back_to_the_checkpoint_policy_off_timm_blocks():
    class Custom(Block):  # a subclass may change forward: not written out by hand
        pass

    torch.manual_seed(0)
    blocks = nn.Sequential(*[Custom(48, 4) for _ in range(2)])
    x = torch.randn(3, 10, 48)
    for a, b in zip(_run(blocks, x, None, "selective"), _run(blocks, x, None, "none"), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_timm_fast_norm_is_not_rebuilt_by_hand():
    block = Block(48, 4)
    assert lean.leanable_norm(block.norm1, block.attn.qkv)
    block.norm1._fast_norm = True  # normalises in the autocast dtype: keep its own path
    assert not lean.leanable_norm(block.norm1, block.attn.qkv)
    assert not lean.leanable_norm(nn.LayerNorm((4, 48)), nn.Linear(48, 48))


@pytest.mark.parametrize("mode", ["none", "selective", "full"])
@pytest.mark.parametrize("padded", [False, True])
def test_last_block_computing_the_queries_only_matches_the_full_run(mode, padded):
    blocks, x = _blocks(3), torch.randn(3, 10, 48)
    valid = TokenSet.of(_valid()) if padded else None
    full = _run(blocks, x, valid, mode, read_from=6)
    trimmed = _run(blocks, x, valid, mode, queries_from=6)
    assert trimmed[0].shape == (3, 4, 48)
    for a, b in zip(trimmed, full, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_last_block_computing_the_queries_only_saves_its_flops():
    blocks, x = _blocks(2), torch.randn(2, 40, 48)
    flops = {}
    for q in (None, 30):
        with FlopCounterMode(display=False) as counter:
            run_blocks(blocks, x, None, queries_from=q)
        flops[q] = counter.get_total_flops()
    # the last block computes 10 of 40 outputs: qkv for every token still (keys and
    # values), then attention, projection and MLP for the 10 queries only
    linear = 2 * 48 * 48 + 2 * 2 * 48 * 192  # projection and MLP, per query
    attention = 2 * 2 * 40 * 48  # scores and weighted sum (not every counter counts them)
    assert flops[None] - flops[30] in (2 * 30 * linear, 2 * 30 * (linear + attention))
