"""Running timm blocks over padded token sets: the key mask, length groups and
checkpointing (usjepa.models.tokens.run_blocks)."""

import pytest
import torch
from timm.models.vision_transformer import Block
from torch.utils.flop_counter import FlopCounterMode

from usjepa.models.tokens import run_blocks


def _padded(seed: int = 0):
    torch.manual_seed(seed)
    blocks = [Block(48, 4, qkv_bias=True) for _ in range(2)]
    x = torch.randn(6, 12, 48)
    lengths = torch.tensor([12, 3, 7, 12, 5, 9])
    valid = torch.arange(12) < lengths[:, None]
    return blocks, x, valid


@pytest.mark.parametrize("checkpoint", ["none", "full", "selective"])
def test_length_groups_give_the_padded_run_and_its_gradients(checkpoint):
    blocks, x, valid = _padded()
    outs, grads = [], []
    for groups in (1, 3):
        xi = x.clone().requires_grad_(True)
        out = run_blocks(blocks, xi, valid, checkpoint, length_groups=groups)
        weights = [p for b in blocks for p in b.parameters()]
        grads.append(torch.autograd.grad((out[valid] ** 2).sum(), [xi, *weights]))
        outs.append(out.detach())
    torch.testing.assert_close(outs[1][valid], outs[0][valid], atol=1e-5, rtol=1e-5)
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_length_groups_spend_fewer_flops_on_padding():
    blocks, x, valid = _padded()
    flops = {}
    for groups in (1, 3):
        with FlopCounterMode(display=False) as counter:
            run_blocks(blocks, x, valid, length_groups=groups)
        flops[groups] = counter.get_total_flops()
    assert flops[3] < 0.85 * flops[1]  # 48 of 72 tokens are real


def test_padded_keys_do_not_reach_the_real_tokens():
    blocks, x, valid = _padded()
    noisy = torch.where(valid[..., None], x, 50 * torch.randn_like(x))
    with torch.no_grad():
        for groups in (1, 3):
            a = run_blocks(blocks, x, valid, length_groups=groups)
            b = run_blocks(blocks, noisy, valid, length_groups=groups)
            torch.testing.assert_close(a[valid], b[valid], atol=1e-5, rtol=1e-5)
        unmasked = run_blocks(blocks, noisy, None)
    assert not torch.allclose(unmasked[valid], a[valid], atol=1e-3)  # the mask matters


def test_blocks_run_as_timm_calls_them():
    """Every block is called as block(x) or block(x, attn_mask=...): a subclass's own
    forward runs, so nothing re-implements timm's."""
    calls = []

    class Spy(Block):
        def forward(self, x, attn_mask=None, is_causal=False):
            calls.append(attn_mask is None)
            return super().forward(x, attn_mask=attn_mask)

    x = torch.randn(2, 5, 48)
    run_blocks([Spy(48, 4)], x)
    run_blocks([Spy(48, 4)], x, torch.ones(2, 5, dtype=torch.bool))
    assert calls == [True, False]


def test_selective_checkpointing_of_length_groups_under_autocast():
    """Under autocast a weight is cast once per region; a block run for a second group
    must still recompute as it ran (each checkpointed call casts afresh)."""
    blocks, x, valid = _padded()
    x.requires_grad_(True)
    grads = []
    for mode in ("none", "selective"):
        with torch.autocast("cpu", torch.bfloat16):
            out = run_blocks(blocks, x, valid, mode, length_groups=3)
        grads.append(torch.autograd.grad(out[valid].float().pow(2).sum(), x)[0])
    torch.testing.assert_close(grads[1], grads[0], atol=1e-2, rtol=1e-2)
