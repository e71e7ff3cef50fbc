"""The narrow JEPA predictor (I-JEPA, Assran et al. 2023, sec. 3 and appendix C)."""

from __future__ import annotations

import torch
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from usjepa.models.posembed import sincos_2d
from usjepa.models.tokens import Checkpointing, gather_tokens, pad_indices, run_blocks


class JEPAPredictor(nn.Module):
    """Predicts target-position embeddings from context tokens.

    Linear in (student width -> ``width``), add fixed 2D sin-cos positions, append one
    learned mask token per target position (carrying only its position), transformer
    blocks, LayerNorm, linear out to ``out_dim`` (the teacher's width, which may differ
    from the student's). Each target block is predicted in its own sequence, as in I-JEPA,
    unless ``one_pass``.

    Args:
        grid_size: patches per side of the student's grid.
        in_dim: student token width.
        out_dim: target (teacher) token width; by default the student's (``in_dim``),
            as for I-JEPA or a teacher as wide as the student.
        width: predictor transformer width.
        depth: predictor blocks.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width over ``width``.
        one_pass: predict all target blocks in one sequence: the context once, then one
            mask token per distinct target position (the union of the blocks, so a
            position two blocks share is predicted once and its prediction serves both),
            all attending to each other, as stable-pretraining's SALT and V-JEPA do,
            instead of repeating the context for each block. Fewer tokens per step
            (``K + |union|`` instead of ``M*(K + T)``); a change of method, see
            ``docs/fidelity.md``.
    """

    pos: Tensor
    #: activation checkpointing of the blocks, a :data:`~usjepa.models.tokens.Checkpointing`
    #: mode (set by the method's ``activation_checkpointing``)
    grad_checkpointing: Checkpointing = "none"
    #: padded rows run in this many groups of similar length (``run_blocks``'s
    #: ``length_groups``; 1: one padded batch)
    length_groups = 4

    def __init__(
        self,
        grid_size: int,
        in_dim: int,
        out_dim: int | None = None,
        width: int = 96,
        depth: int = 2,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        one_pass: bool = False,
    ) -> None:
        super().__init__()
        out_dim = in_dim if out_dim is None else out_dim
        self.grid_size, self.in_dim, self.out_dim = grid_size, in_dim, out_dim
        self.one_pass = one_pass
        self.embed = nn.Linear(in_dim, width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        self.register_buffer("pos", sincos_2d(grid_size, width)[None], persistent=False)
        self.blocks = nn.Sequential(
            *[Block(width, num_heads, mlp_ratio, qkv_bias=True) for _ in range(depth)]
        )
        self.norm = nn.LayerNorm(width)
        self.proj = nn.Linear(width, out_dim)
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.apply(_init_weights)

    def forward(self, context: Tensor, context_idx: Tensor, target_idx: Tensor) -> Tensor:
        """Predict every target block.

        Args:
            context: ``[B, K, in_dim]`` student patch tokens (no CLS) at ``context_idx``.
            context_idx: ``[B, K]`` patch indices of the context.
            target_idx: ``[B, M, T]`` patch indices of ``M`` target blocks. Both sets may
                be right-padded with ``-1``; padded context is kept out of attention and
                padded targets give meaningless rows for the loss to drop.

        Returns:
            ``[B, M, T, out_dim]`` predictions.
        """
        b, m, t = target_idx.shape
        pos = self.pos.expand(b, -1, -1)
        ctx = self.embed(context) + gather_tokens(pos, context_idx)
        k = ctx.shape[1]
        if self.one_pass:  # [context | each target position once] in one sequence
            union, slot = union_indices(target_idx, self.grid_size**2)
            queries = self.mask_token + gather_tokens(pos, union)
            valid = torch.cat([context_idx >= 0, union >= 0], 1)
            x = run_blocks(
                self.blocks, torch.cat([ctx, queries], 1), valid,
                self.grad_checkpointing, self.length_groups,
            )  # fmt: skip
            out = self.proj(self.norm(x[:, k:]))  # [B, U, out_dim]
            return gather_tokens(out, slot)  # [B, M, T, out_dim], padded slots read slot 0
        tgt = self.mask_token + gather_tokens(pos, target_idx)  # [B, M, T, W]
        x = torch.cat([ctx.unsqueeze(1).expand(-1, m, -1, -1), tgt], dim=2)
        valid = torch.cat(
            [(context_idx >= 0).unsqueeze(1).expand(-1, m, -1), target_idx >= 0], dim=2
        )
        x = run_blocks(
            self.blocks, x.reshape(b * m, k + t, -1), valid.reshape(b * m, k + t),
            self.grad_checkpointing, self.length_groups,
        )  # fmt: skip
        out = self.proj(self.norm(x[:, k:]))
        result: Tensor = out.reshape(b, m, t, self.out_dim)
        return result


def union_indices(target_idx: Tensor, num_patches: int) -> tuple[Tensor, Tensor]:
    """The distinct positions of each image's target blocks and where each slot finds its
    position among them.

    Args:
        target_idx: ``[B, M, T]`` patch indices, right-padded with ``-1``.
        num_patches: patches per image (indices are below it).

    Returns:
        ``union [B, U]`` sorted distinct positions, right-padded with ``-1``, and
        ``slot [B, M, T]`` the index into ``union`` of every target slot (padded slots
        point past the real positions and are for the loss to drop).
    """
    b = target_idx.shape[0]
    flat = target_idx.reshape(b, -1)
    hit = torch.zeros(b, num_patches + 1, dtype=torch.bool, device=flat.device)
    hit.scatter_(1, torch.where(flat >= 0, flat, num_patches), True)
    union = pad_indices(hit[:, :num_patches])
    # searchsorted needs sorted rows: the padding (-1) sorts last as num_patches
    keys = torch.where(union >= 0, union, num_patches)
    slot = torch.searchsorted(keys, flat.clamp(min=0).contiguous())
    return union, slot.clamp(max=union.shape[1] - 1).reshape(target_idx.shape)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
