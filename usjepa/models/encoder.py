"""ViT encoder over timm with a token-subset forward, the context encoder of JEPA methods."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import timm
import torch
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from usjepa.errors import ConfigError
from usjepa.models.checkpoint import load_state_dict_file, read_input_spec
from usjepa.models.input_spec import InputSpec
from usjepa.models.tokens import Checkpointing, gather_tokens, last_blocks, run_blocks

#: timm entry point whose defaults our keyword overrides replace; any size can be built.
TIMM_ARCH = "vit_base_patch16_224"


class ViTEncoder(nn.Module):
    """A timm ``VisionTransformer`` that can encode a subset of patch tokens.

    The wrapped model is a plain timm ViT (``self.vit``), so its ``state_dict`` is timm's
    and an export loads back with ``timm.create_model`` (see :mod:`usjepa.models.export`).

    Args:
        img_size: input side in pixels (square inputs).
        patch_size: patch side in pixels.
        in_chans: input channels; ultrasound is grayscale, so 1 by default.
        embed_dim: transformer width.
        depth: transformer blocks.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width over ``embed_dim``.
        drop_path_rate: stochastic depth.
        init_seed: seed for the weight initialisation, drawn from a private RNG so no global
            state is touched; ``None`` uses the ambient RNG.
        checkpoint: optional ``.safetensors`` or ``.pt`` file with a timm ViT state dict
            (e.g. an :func:`usjepa.models.export.export_encoder` output) to load. An export
            brings its input contract (``input_spec``, from the JSON beside it).

    Attributes:
        input_spec: the :class:`~usjepa.models.input_spec.InputSpec` the weights were
            trained with, or ``None`` (not loaded from an export, or an old export).
    """

    input_spec: InputSpec | None = None
    #: activation checkpointing of the blocks, a :data:`~usjepa.models.tokens.Checkpointing`
    #: mode (set by the method's ``activation_checkpointing``)
    grad_checkpointing: Checkpointing = "none"
    #: padded rows run in this many groups of similar length (``run_blocks``'s
    #: ``length_groups``; 1: one padded batch)
    length_groups = 4

    num_prefix_tokens = 1

    def __init__(
        self,
        img_size: int = 64,
        patch_size: int = 8,
        in_chans: int = 1,
        embed_dim: int = 192,
        depth: int = 6,
        num_heads: int = 3,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.0,
        init_seed: int | None = 0,
        checkpoint: str | None = None,
    ) -> None:
        super().__init__()
        if img_size % patch_size:
            raise ConfigError(
                f"ViTEncoder img_size {img_size} is not a multiple of patch_size {patch_size}; "
                f"use img_size {img_size // patch_size * patch_size} or "
                f"{(img_size // patch_size + 1) * patch_size}, or another patch_size"
            )
        self.timm_kwargs: dict[str, Any] = dict(
            img_size=img_size,
            patch_size=patch_size,
            in_chans=in_chans,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            num_classes=0,
            global_pool="token",
            drop_path_rate=drop_path_rate,
        )
        with torch.random.fork_rng(devices=[], enabled=init_seed is not None):
            if init_seed is not None:
                torch.manual_seed(init_seed)
            self.vit = cast(
                VisionTransformer,
                timm.create_model(TIMM_ARCH, pretrained=False, **self.timm_kwargs),
            )
        self.img_size, self.patch_size, self.in_chans = img_size, patch_size, in_chans
        self.embed_dim = embed_dim
        self.grid_size = img_size // patch_size
        if checkpoint is not None:
            load_state_dict_file(self.vit, Path(checkpoint))
            self.input_spec = read_input_spec(Path(checkpoint))

    @property
    def num_patches(self) -> int:
        """Patches per image, ``grid_size ** 2``."""
        return self.grid_size * self.grid_size

    def forward(self, images: Tensor, keep: Tensor | None = None) -> Tensor:
        """Encode images, optionally only the patch tokens listed in ``keep``.

        Args:
            images: ``[B, C, H, W]``.
            keep: ``[B, K]`` long indices into the ``grid_size**2`` patches, or ``None`` for
                all. Slots padded with :data:`~usjepa.models.tokens.PAD` are kept out of
                attention; their output tokens are meaningless.

        Returns:
            ``[B, 1 + K, D]`` normalised tokens, the CLS token first.
        """
        x = self._embed(images, keep)
        valid = None
        if keep is not None:  # the class token, then the kept patches
            prefix = keep.new_ones(len(keep), self.num_prefix_tokens, dtype=torch.bool)
            valid = torch.cat([prefix, keep >= 0], 1)
        x = run_blocks(self.vit.blocks, x, valid, self.grad_checkpointing, self.length_groups)
        result: Tensor = self.vit.norm(x)
        return result

    def _embed(self, images: Tensor, keep: Tensor | None) -> Tensor:
        """Patch embedding + positions, optional token subset, CLS prepended: ``[B, 1+K, D]``."""
        vit = self.vit
        assert vit.pos_embed is not None and vit.cls_token is not None
        x = vit.patch_embed(images) + vit.pos_embed[:, self.num_prefix_tokens :]
        if keep is not None:
            x = gather_tokens(x, keep)
        cls = (vit.cls_token + vit.pos_embed[:, : self.num_prefix_tokens]).expand(len(x), -1, -1)
        result: Tensor = vit.norm_pre(vit.pos_drop(torch.cat([cls, x], dim=1)))
        return result

    def forward_blocks(self, images: Tensor, n_last: int) -> list[Tensor]:
        """Normalised outputs of the last ``n_last`` blocks, each ``[B, 1 + N, D]`` (timm's
        ``forward_intermediates``)."""
        return last_blocks(self.vit, images, n_last, self.num_prefix_tokens)
