"""Blocks over the real tokens of a padded batch (usjepa.models.packed)."""

from __future__ import annotations

import pytest
import torch
from timm.models.vision_transformer import Block
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from usjepa.models.packed import packable
from usjepa.models.tokens import run_blocks


def _padded(seed: int = 0) -> tuple[list[nn.Module], torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    blocks = [Block(48, 4, qkv_bias=True) for _ in range(2)]
    x = torch.randn(3, 10, 48)
    valid = torch.ones(3, 10, dtype=torch.bool)
    valid[0, 6:] = False  # image 0 has 6 real tokens, image 1 has 9, image 2 all 10
    valid[1, 9:] = False
    return blocks, x, valid


@pytest.mark.parametrize("checkpoint", ["none", "full", "selective"])
def test_packed_blocks_match_the_padded_run(checkpoint):
    blocks, x, valid = _padded()
    outs, grads = [], []
    for pack in (False, True):
        for b in blocks:
            b.zero_grad(set_to_none=True)
        xi = x.clone().requires_grad_(True)
        out = run_blocks(blocks, xi, valid, checkpoint, pack=pack)
        (out[valid] ** 2).sum().backward()  # the loss reads real tokens only
        outs.append(out.detach())
        grads.append([p.grad for b in blocks for p in b.parameters()] + [xi.grad])
    padded, packed = outs
    torch.testing.assert_close(packed[valid], padded[valid], atol=1e-5, rtol=1e-5)
    assert torch.equal(packed[~valid], x[~valid])  # padded positions keep their input
    for a, b in zip(grads[0], grads[1], strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_packed_blocks_spend_no_linear_flops_on_padding():
    blocks, x, valid = _padded()
    flops = {}
    for pack in (False, True):
        with FlopCounterMode(display=False) as counter:
            run_blocks(blocks, x, valid, pack=pack)
        flops[pack] = counter.get_total_flops()
    real = valid.sum().item() / valid.numel()  # 25 of 30 tokens
    assert flops[True] < flops[False]
    # every linear layer scales with the real tokens; attention stays padded
    assert flops[True] / flops[False] == pytest.approx(real, abs=0.03)


def test_what_runs_padded():
    block = Block(48, 4)
    assert packable(block)

    class Other(Block):  # a subclass may change forward: run it as it is
        pass

    assert not packable(Other(48, 4))
    dropping = Block(48, 4, drop_path=0.1)
    assert not packable(dropping.train())  # stochastic depth drops per image
    assert packable(dropping.eval())
    compiled = Block(48, 4)
    compiled.compile()
    assert not packable(compiled)
    # unpadded batches never pack: nothing to save
    blocks, x, _ = _padded()
    full = torch.ones(3, 10, dtype=torch.bool)
    torch.testing.assert_close(run_blocks(blocks, x, full), run_blocks(blocks, x, None))


@pytest.mark.parametrize("checkpoint", ["none", "selective"])
def test_unfused_blocks_keep_their_unfused_attention(checkpoint, monkeypatch):
    """A block with timm's ``fused_attn`` off (``TIMM_FUSED_ATTN=0``) attends unfused on
    every path the block is walked by hand: packed, lean and queries-only."""
    blocks, x, valid = _padded()
    for b in blocks:
        b.attn.fused_attn = False

    def refuse(*args, **kwargs):
        raise AssertionError("the fused kernel ran for a block with fused_attn off")

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", refuse)
    padded = run_blocks(blocks, x, valid, checkpoint, pack=False)
    packed = run_blocks(blocks, x, valid, checkpoint, pack=True)
    torch.testing.assert_close(packed[valid], padded[valid], atol=1e-5, rtol=1e-5)
    tail = run_blocks(blocks, x, valid, checkpoint, pack=True, queries_from=4)
    real = valid[:, 4:]
    torch.testing.assert_close(tail[real], padded[:, 4:][real], atol=1e-5, rtol=1e-5)
