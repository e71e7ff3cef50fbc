"""The SAMUS image encoder (SAM ViT-B adapted to ultrasound, 256 px input), on timm parts.

SAMUS keeps SAM's windowed ViT (timm's ``vision_transformer_sam`` attention, with
decomposed relative positions) and adds:

- a convolutional branch (a stem and ``log2(patch)`` max-pool + conv stages) that
  gives a second token map at the ViT's grid;
- an overlapping patch embedding (kernel ``2p``, stride ``p``, on the image resized to
  ``img + p``), an adapter after it, and SAM's 64x64 position table brought down to the
  grid by max-pool + conv stages;
- in each global-attention block: a cross-attention adapter (queries from the ViT
  tokens, keys and values from the CNN map), a conv that refines the CNN map, and a
  parallel MLP adapter scaled by 0.5;
- the CNN map added (x0.5) to the last block's tokens before SAM's neck.

Inputs are [0, 1] pixels; one channel is repeated to three. :func:`remap_samus` reads a
SAMUS checkpoint (the whole model's state dict: ``image_encoder.*`` next to the prompt
encoder and mask decoder) into this module.
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import LayerNorm2d, Mlp
from timm.models.vision_transformer_sam import Attention as WindowAttention
from timm.models.vision_transformer_sam import window_partition, window_unpartition
from torch import Tensor, nn

from usjepa.models.layouts import strip, unwrap


def conv_unit(in_chans: int, out_chans: int, pool: bool) -> nn.Sequential:
    """[2x2 max-pool], 3x3 conv without bias, channel LayerNorm, GELU (NCHW)."""
    layers: list[nn.Module] = [nn.MaxPool2d(2)] if pool else []
    layers += [
        nn.Conv2d(in_chans, out_chans, 3, padding=1, bias=False),
        LayerNorm2d(out_chans),
        nn.GELU(),
    ]
    return nn.Sequential(*layers)


class BottleneckAdapter(nn.Module):
    """``fc2(gelu(fc1(x)))`` at a quarter of the width, with or without the residual."""

    def __init__(self, dim: int, ratio: float = 0.25, residual: bool = True) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, int(dim * ratio))
        self.fc2 = nn.Linear(int(dim * ratio), dim)
        self.residual = residual

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block."""
        out = self.fc2(F.gelu(self.fc1(x)))
        result: Tensor = x + out if self.residual else out
        return result


class CrossAttentionAdapter(nn.Module):
    """Multi-head attention from ViT tokens (queries) to CNN tokens (keys, values); NHWC."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        """Attend from ``x`` to ``context``."""
        b, h, w, d = x.shape

        def heads(t: Tensor) -> Tensor:
            return t.reshape(b, h * w, self.num_heads, -1).transpose(1, 2)

        q, k, v = heads(self.q(x)), heads(self.k(context)), heads(self.v(context))
        out = F.scaled_dot_product_attention(q, k, v)
        result: Tensor = self.proj(out.transpose(1, 2).reshape(b, h, w, d))
        return result


class SAMUSBlock(nn.Module):
    """A SAM block (windowed or global attention); global blocks carry the adapters."""

    def __init__(self, dim: int, num_heads: int, window_size: int, grid: int) -> None:
        super().__init__()
        self.window_size = window_size
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        size = (window_size, window_size) if window_size else (grid, grid)
        self.attn = WindowAttention(dim, num_heads, use_rel_pos=True, input_size=size)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, dim * 4)
        if window_size == 0:
            self.mlp_adapter = BottleneckAdapter(dim, residual=False)
            self.space_adapter = CrossAttentionAdapter(dim, num_heads)
            self.refine_adapter = conv_unit(dim, dim, pool=False)

    def forward(self, x: Tensor, cnn: Tensor) -> tuple[Tensor, Tensor]:
        """Exchange information between the ViT and CNN branches."""
        shortcut, (h, w) = x, x.shape[1:3]
        x = self.norm1(x)
        if self.window_size:
            windows, padded = window_partition(x, self.window_size)
            x = window_unpartition(self.attn(windows), self.window_size, (h, w), padded)
        else:
            x = x + self.space_adapter(x, cnn)
            cnn = self.refine_adapter(cnn.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
            x = self.attn(x)
        x = shortcut + x
        normed = self.norm2(x)
        x = x + self.mlp(normed)
        if not self.window_size:
            x = x + 0.5 * self.mlp_adapter(normed)
        return x, cnn


class ConvStages(nn.Module):
    """An optional stem, then 2x down-sampling conv units; NCHW in, NCHW out."""

    def __init__(self, widths: list[int], stem: int | None = None) -> None:
        super().__init__()
        self.inc = nn.Identity() if stem is None else conv_unit(stem, widths[0], pool=False)
        self.downs = nn.ModuleList(
            conv_unit(widths[i], widths[i + 1], pool=True) for i in range(len(widths) - 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block."""
        x = self.inc(x)
        for stage in self.downs:
            x = stage(x)
        return x


class SAMUSEncoder(nn.Module):
    """SAMUS image encoder; ``forward_features`` returns the neck map ``[B, out, g, g]``
    (``neck=False``: the fused ``[B, D, g, g]`` map before it)."""

    def __init__(
        self,
        img_size: int = 256,
        patch_size: int = 8,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        window_size: int = 14,
        global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11),
        out_chans: int = 256,
        pos_grid: int = 64,
        cnn_width: int = 64,
        neck: bool = True,
    ) -> None:
        super().__init__()
        if img_size % patch_size or pos_grid % (img_size // patch_size):
            raise ValueError(
                f"SAMUS needs img_size ({img_size}) divisible by patch_size ({patch_size}) "
                f"and a grid dividing the {pos_grid}x{pos_grid} position table"
            )
        self.img_size, self.patch_size, self.embed_dim = img_size, patch_size, embed_dim
        self.grid = img_size // patch_size
        stages = int(math.log2(patch_size))
        widths = [cnn_width * 2**i for i in range(stages)] + [embed_dim]
        self.cnn_embed = ConvStages(widths, stem=3)
        self.patch_embed = nn.Sequential()  # keeps the checkpoint's `patch_embed.proj` name
        self.patch_embed.add_module("proj", nn.Conv2d(3, embed_dim, 2 * patch_size, patch_size))
        self.input_adapter = BottleneckAdapter(embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, pos_grid, pos_grid, embed_dim))
        self.post_pos_embed = ConvStages([embed_dim] * (int(math.log2(pos_grid // self.grid)) + 1))
        windows = [0 if i in global_attn_indexes else window_size for i in range(depth)]
        self.blocks = nn.ModuleList(
            SAMUSBlock(embed_dim, num_heads, window, self.grid) for window in windows
        )
        self.neck = (
            nn.Sequential(
                nn.Conv2d(embed_dim, out_chans, 1, bias=False),
                LayerNorm2d(out_chans),
                nn.Conv2d(out_chans, out_chans, 3, padding=1, bias=False),
                LayerNorm2d(out_chans),
            )
            if neck
            else None
        )
        self.out_dim = out_chans if neck else embed_dim

    def forward_features(self, x: Tensor) -> Tensor:
        """Patch tokens of the image encoder, ``[B, N, D]``."""
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        cnn = self.cnn_embed(x).permute(0, 2, 3, 1)
        side = self.img_size + self.patch_size
        resized = F.interpolate(x, (side, side), mode="bilinear", align_corners=False)
        tokens = self.input_adapter(self.patch_embed(resized).permute(0, 2, 3, 1))
        tokens = tokens + self.post_pos_embed(self.pos_embed.permute(0, 3, 1, 2)).permute(
            0, 2, 3, 1
        )
        for block in self.blocks:
            tokens, cnn = block(tokens, cnn)
        fused = (tokens + 0.5 * cnn).permute(0, 3, 1, 2)
        result: Tensor = fused if self.neck is None else self.neck(fused)
        return result

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block."""
        return self.forward_features(x)


_SAMUS_RENAMES = (
    (r"\.(?:maxpool_conv|conv)\.(\d+)\.", r".\1."),  # SingleConv / SingleDown sequentials
    (r"input_Adapter\.D_fc", "input_adapter.fc"),
    (r"MLP_Adapter\.D_fc", "mlp_adapter.fc"),
    (r"Space_Adapter\.", "space_adapter."),
    (r"refine_Adapter\.", "refine_adapter."),
    (r"\.mlp\.lin(\d)\.", r".mlp.fc\1."),
)


def remap_samus(state: dict[str, Any], model: nn.Module) -> dict[str, Tensor]:
    """A SAMUS checkpoint (the full model's state dict, possibly under ``model`` or
    ``state_dict``) to :class:`SAMUSEncoder` keys; the prompt encoder, the mask decoder
    and, without ``neck``, the neck are dropped."""
    out = {}
    for key, value in strip(unwrap(state, ("state_dict", "model")), "module.").items():
        if not key.startswith("image_encoder."):
            continue
        key = key.removeprefix("image_encoder.")
        for pattern, repl in _SAMUS_RENAMES:
            key = re.sub(pattern, repl, key)
        if key.startswith("neck.") and getattr(model, "neck", None) is None:
            continue
        out[key] = value
    return out
