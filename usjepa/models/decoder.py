"""MAE pixel decoder (He et al. 2022): reconstructs masked patches from visible tokens."""

from __future__ import annotations

import torch
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from usjepa.models.posembed import sincos_2d
from usjepa.models.predictor import _init_weights
from usjepa.models.tokens import Checkpointing, gather_tokens, run_blocks


class MAEDecoder(nn.Module):
    """Light transformer that maps visible encoder tokens to pixels of masked patches.

    Args:
        grid_size: patches per side.
        in_dim: encoder width.
        patch_pixels: values per patch, ``patch_size**2 * in_chans``.
        width: decoder width (MAE uses a narrow, shallow decoder).
        depth: decoder blocks.
        num_heads: attention heads.
    """

    pos: Tensor
    #: activation checkpointing of the blocks, a :data:`~usjepa.models.tokens.Checkpointing`
    #: mode
    grad_checkpointing: Checkpointing = "none"
    #: padded rows run in this many groups of similar length (``run_blocks``'s
    #: ``length_groups``; 1: one padded batch)
    length_groups = 4

    def __init__(
        self,
        grid_size: int,
        in_dim: int,
        patch_pixels: int,
        width: int = 96,
        depth: int = 2,
        num_heads: int = 4,
    ) -> None:
        super().__init__()
        self.grid_size = grid_size
        self.embed = nn.Linear(in_dim, width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        self.register_buffer("pos", sincos_2d(grid_size, width)[None], persistent=False)
        self.blocks = nn.Sequential(
            *[Block(width, num_heads, 4.0, qkv_bias=True) for _ in range(depth)]
        )
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, patch_pixels)
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.apply(_init_weights)

    def forward(
        self,
        visible: Tensor,
        visible_idx: Tensor,
        masked_idx: Tensor,
    ) -> Tensor:
        """Reconstruct masked patches.

        Args:
            visible: ``[B, K, in_dim]`` encoder patch tokens (no CLS).
            visible_idx: ``[B, K]`` their patch indices.
            masked_idx: ``[B, T]`` patch indices to reconstruct; like ``visible_idx``,
                may be right-padded with ``-1`` (kept out of attention).

        Returns:
            ``[B, T, patch_pixels]``.
        """
        pos = self.pos.expand(len(visible), -1, -1)
        vis = self.embed(visible) + gather_tokens(pos, visible_idx)
        msk = self.mask_token + gather_tokens(pos, masked_idx)
        valid = torch.cat([visible_idx >= 0, masked_idx >= 0], dim=1)
        x = run_blocks(
            self.blocks,
            torch.cat([vis, msk], 1),
            valid,
            self.grad_checkpointing,
            self.length_groups,
        )
        result: Tensor = self.head(self.norm(x[:, vis.shape[1] :]))
        return result


def patchify(images: Tensor, patch_size: int) -> Tensor:
    """``[B, C, H, W]`` -> ``[B, N, patch_size**2 * C]`` in row-major patch order."""
    b, c, h, w = images.shape
    p = patch_size
    x = images.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(b, (h // p) * (w // p), p * p * c)
