"""Padded patch-index sets: the one convention every mask consumer shares.

Mask generators give each image the context and target patches of its own draw, so the
sets of one batch differ in length. They are stacked right-padded with :data:`PAD`
(``-1``); a consumer gathers with the padding clamped to a real index and keeps the
padded tokens out of attention (a :class:`TokenSet`) and out of the loss (``index >= 0``).
I-JEPA instead cuts every set to the batch's shortest, which on scan-region masks
throws away most of an image's context (see ``docs/fidelity.md``).

Whether a set is padded, and where its real tokens are, depends on the data. Read from
device memory that costs a host-device synchronisation; a :class:`TokenSet` made on the
host, before the batch moves to the device, carries both, so the step needs none.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

import torch
import torch.utils.checkpoint
from torch import Tensor, nn

from usjepa.models import cpu_matmul
from usjepa.models.packed import block_forward, packable, run_packed

#: index that marks a padded slot in a patch-index tensor.
PAD = -1

#: activation checkpointing of transformer blocks: ``none`` keeps every activation;
#: ``full`` keeps only each block's input and runs the block again in the backward pass;
#: ``selective`` keeps the matmuls' and attention's inputs and outputs and recomputes the
#: pointwise work between them (norms, GELU): no matmul runs twice. On timm's standard
#: blocks it is written out by hand (:mod:`usjepa.models.lean`); other blocks get
#: ``torch.utils.checkpoint``'s selective policy (:data:`SAVED_OPS` kept).
Checkpointing = Literal["none", "full", "selective"]

_aten = torch.ops.aten
#: the ops whose outputs ``selective`` keeps (every other op in a block is recomputed)
SAVED_OPS = [
    _aten.mm.default,
    _aten.addmm.default,
    _aten.bmm.default,
    _aten.baddbmm.default,
    _aten._scaled_dot_product_flash_attention.default,
    _aten._scaled_dot_product_efficient_attention.default,
    _aten._scaled_dot_product_cudnn_attention.default,
    _aten._scaled_dot_product_flash_attention_for_cpu.default,
]


def checkpointing_mode(value: bool | str) -> Checkpointing:
    """``value`` as a :data:`Checkpointing` mode (``True`` is ``full``, ``False`` ``none``)."""
    mode = ("full" if value else "none") if isinstance(value, bool) else value
    if mode not in ("none", "full", "selective"):
        raise ValueError(
            f"activation_checkpointing={value!r}; choose none, full or selective (or a bool)"
        )
    return mode  # type: ignore[return-value]


def _selective_context() -> tuple[Any, Any]:
    return torch.utils.checkpoint.create_selective_checkpoint_contexts(SAVED_OPS)


def gather_tokens(tokens: Tensor, index: Tensor) -> Tensor:
    """Select tokens per sample: ``tokens [B, N, D]``, ``index [B, ...]`` -> ``[B, ..., D]``.

    Padded slots (:data:`PAD`) read token 0; mask them with ``index >= 0``.
    """
    flat = index.reshape(index.shape[0], -1).clamp(min=0)
    out = torch.gather(tokens, 1, flat.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
    return out.reshape(*index.shape, tokens.shape[-1])


def flat_rows(mask: Tensor) -> Tensor:
    """Flat positions ``[N_true]`` of the True entries of ``mask`` (row-major, the order
    of ``t[mask]``)."""
    return mask.reshape(-1).nonzero().squeeze(1)


class Movable:
    """``to(device)`` for a frozen dataclass of tensors (and of other ``Movable``s), which
    Lightning then moves with the batch like a tensor; other fields stay as they are."""

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Any:
        """The same object with its tensors on ``device``."""
        moved = {}
        for field in fields(self):  # type: ignore[arg-type]
            value = getattr(self, field.name)
            if isinstance(value, (Tensor, Movable)):
                moved[field.name] = value.to(device, non_blocking=non_blocking)
        return replace(self, **moved)  # type: ignore[type-var]


@dataclass(frozen=True)
class TokenSet(Movable):
    """Which tokens of a padded ``[B, N]`` layout are real, with what running blocks over
    them needs known without reading device memory.

    Make it with :meth:`of` where ``valid`` lives on the host (the methods do, in
    ``on_before_batch_transfer``); Lightning moves it with the batch.

    Attributes:
        valid: ``[B, N]`` boolean, True at real tokens.
        rows: ``[N_real]`` flat positions of the real tokens in the ``B * N`` layout.
        full: nothing is padded (a host bool).
    """

    valid: Tensor
    rows: Tensor
    full: bool

    @classmethod
    def of(cls, valid: Tensor) -> TokenSet:
        """The token set of ``valid [B, N]`` (reads it: free on the host, a sync on a GPU)."""
        return cls(valid, flat_rows(valid), bool(valid.all()))


def run_blocks(
    blocks: Iterable[nn.Module],
    x: Tensor,
    valid: TokenSet | Tensor | None,
    checkpoint: bool | Checkpointing = False,
    pack: bool = True,
    queries_from: int | None = None,
) -> Tensor:
    """Transformer ``blocks`` over ``x [B, N, D]`` with the padded keys kept out of
    attention: ``valid`` is a :class:`TokenSet` (made on the host, so nothing here reads
    device memory) or its ``[B, N]`` validity map; unpadded inputs (or ``valid=None``) run
    the blocks as they are, on the fused SDPA path. Padded inputs run their token-wise
    layers on the real tokens only (:mod:`usjepa.models.packed`; padded positions of the
    result keep their input) unless ``pack`` is False. ``checkpoint`` (a
    :data:`Checkpointing` mode; ``True`` is ``full``) trades the activations kept for the
    backward pass against recomputation there. ``queries_from``: return only the
    positions ``queries_from:`` (``[B, N - queries_from, D]``), which the last block then
    computes alone (every token still gives it keys and values)."""
    tokens = TokenSet.of(valid) if isinstance(valid, Tensor) else valid
    mask = None if tokens is None or tokens.full else tokens.valid[:, None, None, :]
    mode = checkpointing_mode(checkpoint) if torch.is_grad_enabled() else "none"
    blocks = list(blocks)
    plain = all(map(packable, blocks))
    # selective on timm's own blocks: by hand (usjepa.models.lean), no checkpoint wrapper
    lean = mode == "selective" and plain
    recompute: dict[str, Any] | None = None
    if mode == "full" or (mode == "selective" and not lean):
        recompute = {"use_reentrant": False}
        if mode == "selective":
            recompute["context_fn"] = _selective_context
            recompute["respect_saved_tensors_hooks"] = True  # save_on_cpu etc. see them too
    if pack and mask is not None and tokens is not None and plain:
        return run_packed(blocks, x, tokens.rows, mask, recompute, lean, queries_from)
    kwargs: dict[str, Any] = {} if mask is None else {"attn_mask": mask}
    # timm's blocks walked step by step also run their linear layers through oneDNN on
    # CPUs where that is faster (usjepa.models.cpu_matmul)
    stepwise = lean or (plain and cpu_matmul.uses_onednn(x))
    for i, block in enumerate(blocks):
        last = queries_from if i == len(blocks) - 1 and plain else None
        if stepwise or last is not None:
            args = (block, x, mask, None, None, lean, last)
            if recompute is None:
                x = block_forward(*args)
            else:
                x = torch.utils.checkpoint.checkpoint(block_forward, *args, **recompute)
        elif recompute is None:
            x = block(x, **kwargs)
        else:
            x = torch.utils.checkpoint.checkpoint(block, x, **recompute, **kwargs)
    if queries_from is not None and not (plain and blocks):
        x = x[:, queries_from:]
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
