"""Padded patch-index sets: the one convention every mask consumer shares.

Mask generators give each image the context and target patches of its own draw, so the
sets of one batch differ in length. They are stacked right-padded with :data:`PAD`
(``-1``); a consumer gathers with the padding clamped to a real index, keeps the padded
tokens out of attention (:func:`run_blocks` passes the blocks a key mask, which timm's
``Block`` hands to ``F.scaled_dot_product_attention``) and out of the loss
(``index >= 0``). I-JEPA instead cuts every set to the batch's shortest, which on
scan-region masks throws away most of an image's context (see ``docs/fidelity.md``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any, Literal

import torch
import torch.utils.checkpoint
from torch import Tensor, nn

#: index that marks a padded slot in a patch-index tensor.
PAD = -1

#: activation checkpointing of transformer blocks: ``none`` keeps every activation;
#: ``full`` keeps only each block's input and runs the block again in the backward pass;
#: ``selective`` keeps the outputs of the matmuls and of attention (:data:`SAVED_OPS`) and
#: recomputes the pointwise work between them (norms, GELU, residual adds): PyTorch's
#: selective activation checkpointing, no matmul runs twice.
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


#: whether this torch's checkpoint can route the tensors a policy keeps through
#: saved-tensor hooks (newer releases; older ones bypass them)
_RESPECTS_HOOKS = (
    "respect_saved_tensors_hooks" in inspect.signature(torch.utils.checkpoint.checkpoint).parameters
)


def checkpointing_mode(value: bool | str) -> Checkpointing:
    """``value`` as a :data:`Checkpointing` mode (``True`` is ``full``, ``False`` ``none``)."""
    mode = ("full" if value else "none") if isinstance(value, bool) else value
    if mode == "none":
        return "none"
    if mode == "full":
        return "full"
    if mode == "selective":
        return "selective"
    raise ValueError(
        f"activation_checkpointing={value!r}; choose none, full or selective (or a bool)"
    )


def _selective_context() -> tuple[Any, Any]:
    result: tuple[Any, Any] = torch.utils.checkpoint.create_selective_checkpoint_contexts(SAVED_OPS)
    return result


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


def run_blocks(
    blocks: Iterable[nn.Module],
    x: Tensor,
    valid: Tensor | None = None,
    checkpoint: bool | Checkpointing = False,
    length_groups: int = 1,
) -> Tensor:
    """Transformer ``blocks`` over ``x [B, N, D]``, each called as ``block(x)`` or, when
    ``valid [B, N]`` (True at real tokens) is given, ``block(x, attn_mask=...)`` with the
    padded keys masked out. Outputs at padded positions are meaningless.

    ``checkpoint`` (a :data:`Checkpointing` mode; ``True`` is ``full``) wraps each block
    in ``torch.utils.checkpoint.checkpoint`` (``selective``: with a selective-checkpoint
    policy that keeps :data:`SAVED_OPS`), trading the activations kept for the backward
    pass against recomputation there. Blocks must take ``attn_mask`` when ``valid`` is
    given: timm's ``Block`` does from timm 1.0.16 on.

    ``length_groups > 1`` runs padded rows in that many groups of similar length, each
    cut to its own longest row (the rows sorted by their count of real tokens, each row's
    real tokens moved to its front first), so that the linear layers spend less on
    padding; the blocks see plain padded batches all the same. A transformer block
    without positional terms of its own (timm's ``Block``: positions are added before the
    blocks) gives each real token the same output in any order, so the result equals the
    single padded run up to float rounding. It reads the row lengths on the host (one
    host-device synchronisation on a GPU).
    ``benchmarks/results/perf/plain_core/plain_core.md`` measures it.
    """
    blocks = list(blocks)
    mode = checkpointing_mode(checkpoint) if torch.is_grad_enabled() else "none"
    options: dict[str, Any] = {"use_reentrant": False}
    if mode == "selective":
        options["context_fn"] = _selective_context
        if _RESPECTS_HOOKS:  # save_on_cpu etc. see what the policy keeps too
            options["respect_saved_tensors_hooks"] = True

    device = x.device.type
    # autocast keeps one cast of each weight for the whole autocast region, so a block
    # run for a second group in the forward pass casts nothing, while its recomputation
    # in the backward pass does: selective checkpointing then finds the ops of the two
    # runs differ. Each checkpointed call casts afresh instead (a copy of the weights).
    fresh_casts = mode == "selective" and torch.is_autocast_enabled(device)

    def region(block: nn.Module, h: Tensor, **kwargs: Any) -> Tensor:
        if not fresh_casts:
            out: Tensor = block(h, **kwargs)
            return out
        dtype = torch.get_autocast_dtype(device)
        with torch.autocast(device, dtype=dtype, cache_enabled=False):
            out = block(h, **kwargs)
        return out

    def run(h: Tensor, real: Tensor | None) -> Tensor:
        kwargs: dict[str, Any] = {} if real is None else {"attn_mask": real[:, None, None, :]}
        for block in blocks:
            if mode == "none":
                h = block(h, **kwargs)
            else:
                call: Callable[..., Tensor] = region
                h = torch.utils.checkpoint.checkpoint(call, block, h, **options, **kwargs)
        return h

    if valid is None or length_groups <= 1 or len(x) < 2:
        return run(x, valid)
    return _run_grouped(run, x, valid, length_groups)


def _run_grouped(
    run: Callable[[Tensor, Tensor | None], Tensor], x: Tensor, valid: Tensor, groups: int
) -> Tensor:
    """``run`` over rows of similar length (see :func:`run_blocks`'s ``length_groups``)."""
    b, n, d = x.shape
    lengths = valid.sum(1)
    order = torch.argsort(lengths, descending=True, stable=True)
    counts = lengths[order].tolist()  # the one host read
    # each row's real positions first (in order), then its padded ones
    front = torch.argsort((~valid).to(torch.int8), dim=1, stable=True)
    bounds = [round(i * b / groups) for i in range(groups + 1)]
    outs, flat = [], []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        if hi <= lo:
            continue
        rows, longest = order[lo:hi], max(1, counts[lo])
        idx = front[rows, :longest]  # [R, L]
        part = torch.gather(x[rows], 1, idx.unsqueeze(-1).expand(-1, -1, d))
        real = None if counts[hi - 1] == longest else torch.gather(valid[rows], 1, idx)
        outs.append(run(part, real).reshape(-1, d))
        flat.append((rows.unsqueeze(1) * n + idx).reshape(-1))
    out = x.new_zeros(b * n, d).index_copy(0, torch.cat(flat), torch.cat(outs).to(x.dtype))
    return out.view(b, n, d)


def pad_indices(mask: Tensor, length: int | None = None) -> Tensor:
    """Sorted True positions of each row of ``mask [..., N]``, right-padded with :data:`PAD`.

    Args:
        mask: boolean ``[..., N]``.
        length: output length; the longest row's count when ``None`` (read from ``mask``:
            a host-device synchronisation on a GPU).

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
    forward = getattr(vit, "forward_intermediates", None)
    if forward is None:
        raise ValueError(f"{type(vit).__name__} has no forward_intermediates (a timm ViT has)")
    outs = forward(
        images,
        indices=n_last,
        norm=True,
        output_fmt="NLC",
        intermediates_only=True,
        return_prefix_tokens=prefix > 0,
    )
    return [torch.cat([p, s], 1) for s, p in outs] if prefix > 0 else list(outs)
