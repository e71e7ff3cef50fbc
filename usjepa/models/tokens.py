"""Padded patch-index sets: the one convention every mask consumer shares.

Mask generators give each image the context and target patches of its own draw, so the
sets of one batch differ in length. They are stacked right-padded with :data:`PAD`
(``-1``); a consumer gathers with the padding clamped to a real index and keeps the
padded tokens out of attention (:func:`key_mask`) and out of the loss (``index >= 0``).
I-JEPA instead cuts every set to the batch's shortest, which on scan-region masks
throws away most of an image's context (see ``docs/fidelity.md``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.utils.checkpoint
from torch import Tensor, nn

#: index that marks a padded slot in a patch-index tensor.
PAD = -1


def gather_tokens(tokens: Tensor, index: Tensor) -> Tensor:
    """Select tokens per sample: ``tokens [B, N, D]``, ``index [B, ...]`` -> ``[B, ..., D]``.

    Padded slots (:data:`PAD`) read token 0; mask them with ``index >= 0``.
    """
    flat = index.reshape(index.shape[0], -1).clamp(min=0)
    out = torch.gather(tokens, 1, flat.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
    return out.reshape(*index.shape, tokens.shape[-1])


def key_mask(valid: Tensor) -> Tensor | None:
    """Attention mask ``[B, 1, 1, N]`` (True: attend) from a ``[B, N]`` validity map, or
    ``None`` when nothing is padded, so unpadded batches keep the fused SDPA path."""
    if bool(valid.all()):
        return None
    return valid[:, None, None, :]


def run_blocks(
    blocks: Iterable[nn.Module], x: Tensor, valid: Tensor | None, checkpoint: bool = False
) -> Tensor:
    """Transformer ``blocks`` over ``x [B, N, D]`` with the padded keys (``valid [B, N]``
    False) kept out of attention; unpadded inputs (or ``valid=None``) run the blocks as
    they are. ``checkpoint`` keeps only each block's input for the backward pass and runs
    the block again there (activation checkpointing: less memory, one more forward)."""
    mask = None if valid is None else key_mask(valid)
    kwargs: dict[str, Any] = {} if mask is None else {"attn_mask": mask}
    recompute = checkpoint and torch.is_grad_enabled()
    for block in blocks:
        if recompute:
            x = torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False, **kwargs)
        else:
            x = block(x, **kwargs)
    return x


def pad_indices(mask: Tensor, length: int | None = None) -> Tensor:
    """Sorted True positions of each row of ``mask [..., N]``, right-padded with :data:`PAD`.

    Args:
        mask: boolean ``[..., N]``.
        length: output length; the longest row's count when ``None``.

    Returns:
        ``[..., length]`` long indices.
    """
    n = mask.shape[-1]
    counts = mask.sum(-1)
    if length is None:
        length = max(1, int(counts.max())) if counts.numel() else 1
    pos = torch.arange(n, device=mask.device).expand(mask.shape)
    keyed = torch.where(mask, pos, pos + n)  # valid positions sort first, in order
    idx = keyed.sort(-1).values[..., :length]
    return torch.where(idx < n, idx, torch.full_like(idx, PAD))


def last_blocks(vit: nn.Module, images: Tensor, n_last: int, prefix: int = 1) -> list[Tensor]:
    """The final-normed outputs ``[B, prefix + N, D]`` of a timm ViT's last ``n_last``
    blocks, from timm's ``forward_intermediates`` (prefix tokens first)."""
    if not hasattr(vit, "forward_intermediates"):
        raise ValueError(f"{type(vit).__name__} has no forward_intermediates (a timm ViT has)")
    outs = vit.forward_intermediates(  # type: ignore[operator]
        images,
        indices=n_last,
        norm=True,
        output_fmt="NLC",
        intermediates_only=True,
        return_prefix_tokens=prefix > 0,
    )
    return [torch.cat([p, s], 1) for s, p in outs] if prefix > 0 else list(outs)
