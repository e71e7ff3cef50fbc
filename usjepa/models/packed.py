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
drops per image) run padded. :func:`block_forward`, which walks such a block step by
step, also runs unpadded blocks where the step needs more than ``block(x)`` does: a
last block that computes only the positions read (``queries_from``) and selective
checkpointing written out by hand (``lean``, :mod:`usjepa.models.lean`). It attends the
way the block would: through ``F.scaled_dot_product_attention``, or with timm's
``fused_attn`` off (``TIMM_FUSED_ATTN=0``) through the unfused softmax(QK^T)V.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import Mlp
from timm.models.vision_transformer import Attention, Block
from torch import Tensor, nn

from usjepa.models.cpu_matmul import run_linear
from usjepa.models.lean import gelu_linear, norm_linear


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


def block_forward(
    block: nn.Module,
    x: Tensor,
    attn_mask: Tensor | None = None,
    index: Tensor | None = None,
    shape: tuple[int, int] | None = None,
    lean: bool = False,
    queries_from: int | None = None,
) -> Tensor:
    """One timm ``block`` (one for which :func:`packable` holds), step by step.

    Args:
        block: the block.
        x: ``[B, N, D]`` tokens, or with ``index`` the packed real tokens ``[N_real, D]``
            in the order of ``index``.
        attn_mask: ``[B, 1, 1, N]`` boolean key mask (True: attend), or ``None``.
        index: ``[N_real]`` flat positions of the real tokens in the ``B * N`` layout
            (packed input only).
        shape: ``(B, N)`` of the padded layout (packed input only).
        lean: keep the inputs of the norms and of GELU for the backward pass rather than
            their outputs (:mod:`usjepa.models.lean`): fewer activations, the same matmuls.
        queries_from: compute the output at sequence positions ``queries_from:`` only
            (all tokens still give keys and values): for a last block whose earlier
            positions nobody reads.

    Returns:
        the block's output, shaped like ``x``; with ``queries_from``, ``[B, N -
        queries_from, D]`` (padded layout, whether or not ``x`` was packed; padded
        positions hold meaningless values).
    """
    blk: Any = block
    attn = blk.attn
    heads, head_dim = attn.num_heads, attn.head_dim
    if getattr(attn, "gate", None) is not None:
        normed = blk.norm1(x)
        gate = attn.gate(normed).sigmoid()
        qkv = attn.qkv(normed)
    else:
        gate, qkv = None, norm_linear(blk.norm1, attn.qkv, x, lean)
    if index is None:
        b, n = x.shape[0], x.shape[1]
    else:
        assert shape is not None
        b, n = shape
        qkv = _unpack(qkv, index, b, n)
    q, k, v = qkv.view(b, n, 3, heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    if queries_from is not None:  # the rest of the block runs on the queries, padded layout
        q = q[:, :, queries_from:]
        if index is not None:
            x = _unpack(x, index, b, n)
            gate = None if gate is None else _unpack(gate, index, b, n)
            index = None
        x = x[:, queries_from:]
        gate = None if gate is None else gate[:, queries_from:]
        n -= queries_from
    if getattr(attn, "fused_attn", True):
        drop = attn.attn_drop.p if attn.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=drop)
    else:  # the block's unfused path (timm's fused_attn=False, e.g. TIMM_FUSED_ATTN=0)
        scores = (q * attn.scale) @ k.transpose(-2, -1)
        if attn_mask is not None:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        out = attn.attn_drop(scores.softmax(-1)) @ v
    out = out.transpose(1, 2).reshape(b * n, heads * head_dim)
    out = out.view(b, n, -1) if index is None else out.index_select(0, index)
    out = getattr(attn, "norm", nn.Identity())(out)
    if gate is not None:
        out = out * gate
    out = attn.proj_drop(run_linear(attn.proj, out))
    x = x + blk.drop_path1(blk.ls1(out))
    mlp = blk.mlp
    if type(mlp) is Mlp and not _acts_on(mlp.drop1) and type(mlp.norm) is nn.Identity:
        hidden = norm_linear(blk.norm2, mlp.fc1, x, lean)
        out = mlp.drop2(gelu_linear(mlp.act, mlp.fc2, hidden, lean))
    else:
        out = mlp(blk.norm2(x))
    return x + blk.drop_path2(blk.ls2(out))


def _unpack(x: Tensor, index: Tensor, b: int, n: int) -> Tensor:
    """Packed rows ``[N_real, C]`` at ``index`` into the padded ``[B, N, C]`` (zeros)."""
    return x.new_zeros(b * n, x.shape[-1]).index_copy(0, index, x).view(b, n, -1)


def _acts_on(dropout: nn.Module) -> bool:
    """Whether a dropout layer changes its input now."""
    return dropout.training and getattr(dropout, "p", 0.0) > 0


def run_packed(
    blocks: list[nn.Module],
    x: Tensor,
    rows: Tensor,
    mask: Tensor,
    recompute: dict[str, Any] | None,
    lean: bool = False,
    queries_from: int | None = None,
) -> Tensor:
    """``blocks`` over the real tokens of ``x [B, N, D]`` (at the flat positions ``rows``,
    :attr:`usjepa.models.tokens.TokenSet.rows`), attention keyed by ``mask``
    (``[B, 1, 1, N]``, True: attend); padded positions of the result keep their
    input. ``recompute``: keyword arguments of ``torch.utils.checkpoint.checkpoint`` to
    checkpoint each block with, or ``None``; ``lean`` and ``queries_from`` (for the last
    block; the result is then ``[B, N - queries_from, D]``): see :func:`block_forward`."""
    b, n, d = x.shape
    flat = x.reshape(b * n, d)
    packed = flat.index_select(0, rows)
    for i, block in enumerate(blocks):
        last = queries_from if i == len(blocks) - 1 else None
        args = (block, packed, mask, rows, (b, n), lean, last)
        if recompute is None:
            packed = block_forward(*args)
        else:
            packed = torch.utils.checkpoint.checkpoint(block_forward, *args, **recompute)
    if queries_from is not None:
        return packed  # the last block left the packed layout
    return flat.index_copy(0, rows, packed).view(b, n, d)
