"""Transformer blocks over the real tokens of a padded batch only.

Each image keeps its own mask draw, so a batch's index sets are right-padded to the
longest (:mod:`usjepa.models.tokens`). Run as they are, the blocks spend their linear
layers (qkv, projection, MLP: nearly all of a ViT block's FLOPs) on the padding too, and
keep its activations for the backward pass. Here every token-wise layer runs on the
packed ``[N_real, D]`` tokens; only attention sees the padded ``[B, N]`` layout (padded
keys masked out), entered and left through one index copy each way. The outputs at real
positions are those of the padded run up to float rounding; padded positions keep their
input.

It applies to timm's standard ``Block`` and ``Attention`` (which ours use); other block
types, a block compiled with ``torch.compile`` and stochastic depth in training (which
drops per image) run padded.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Attention, Block
from torch import Tensor, nn


def packable(block: nn.Module) -> bool:
    """Whether ``block`` can run on packed tokens (see the module docstring)."""
    if type(block) is not Block or type(block.attn) is not Attention:
        return False
    if getattr(block, "_compiled_call_impl", None) is not None:
        return False  # compiled: run what was compiled
    drops = (
        getattr(block.drop_path1, "drop_prob", 0.0),
        getattr(block.drop_path2, "drop_prob", 0.0),
    )
    return not (block.training and max(drops) > 0)


def packed_block(
    block: nn.Module, x: Tensor, index: Tensor, shape: tuple[int, int], attn_mask: Tensor
) -> Tensor:
    """One timm ``block`` over packed tokens ``x [N_real, D]``.

    Args:
        block: a timm ``Block`` for which :func:`packable` holds.
        x: the real tokens, in the order of ``index``.
        index: ``[N_real]`` flat positions of the real tokens in the ``B * N`` layout.
        shape: ``(B, N)`` of the padded layout.
        attn_mask: ``[B, 1, 1, N]`` boolean key mask (True: attend).

    Returns:
        ``[N_real, D]``.
    """
    blk: Any = block
    attn = blk.attn
    b, n = shape
    heads, head_dim = attn.num_heads, attn.head_dim
    h = blk.norm1(x)
    gate = attn.gate(h).sigmoid() if getattr(attn, "gate", None) is not None else None
    qkv = attn.qkv(h)  # [N_real, 3 * heads * head_dim]
    qkv = qkv.new_zeros(b * n, qkv.shape[-1]).index_copy(0, index, qkv)
    q, k, v = qkv.view(b, n, 3, heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    drop = attn.attn_drop.p if attn.training else 0.0
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=drop)
    out = out.transpose(1, 2).reshape(b * n, heads * head_dim).index_select(0, index)
    out = getattr(attn, "norm", nn.Identity())(out)
    if gate is not None:
        out = out * gate
    out = attn.proj_drop(attn.proj(out))
    x = x + blk.drop_path1(blk.ls1(out))
    return x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))


def run_packed(
    blocks: list[nn.Module],
    x: Tensor,
    rows: Tensor,
    mask: Tensor,
    recompute: dict[str, Any] | None,
) -> Tensor:
    """``blocks`` over the real tokens of ``x [B, N, D]`` (at the flat positions ``rows``,
    :attr:`usjepa.models.tokens.TokenSet.rows`), attention keyed by ``mask``
    (``[B, 1, 1, N]``, True: attend); padded positions of the result keep their
    input. ``recompute``: keyword arguments of ``torch.utils.checkpoint.checkpoint`` to
    checkpoint each block with, or ``None``."""
    b, n, d = x.shape
    flat = x.reshape(b * n, d)
    packed = flat.index_select(0, rows)
    for block in blocks:
        args = (block, packed, rows, (b, n), mask)
        if recompute is None:
            packed = packed_block(*args)
        else:
            packed = torch.utils.checkpoint.checkpoint(packed_block, *args, **recompute)
    return flat.index_copy(0, rows, packed).view(b, n, d)
