"""A user's extension written only against usjepa's public contracts, and checked by
``mypy --strict`` (``make lint``): an encoder of one's own, a mask generator, a loss
module and a JEPA objective. ``test_contracts.py`` runs it."""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from usjepa.masks import MaskedBatch, MaskGenerator
from usjepa.methods import JEPAModule
from usjepa.models import ContextEncoder, TokenEncoder, gather_tokens
from usjepa.models.input_spec import InputSpec


class PatchEncoder(nn.Module):
    """A convolutional patch encoder: no transformer, no class token, no ViTEncoder."""

    num_prefix_tokens = 0
    input_spec: InputSpec | None = None

    def __init__(self, img_size: int = 32, patch_size: int = 8, embed_dim: int = 32) -> None:
        super().__init__()
        self.grid_size, self.patch_size, self.embed_dim = (
            img_size // patch_size,
            patch_size,
            embed_dim,
        )
        self.proj = nn.Conv2d(1, embed_dim, patch_size, patch_size)

    def forward(self, images: Tensor, keep: Tensor | None = None) -> Tensor:
        tokens: Tensor = self.proj(images).flatten(2).transpose(1, 2)  # [B, N, D]
        return tokens if keep is None else gather_tokens(tokens, keep)


class TopAndBottom:
    """Context: the top rows of the grid; one target block: the rows below."""

    def __init__(self, grid_size: int = 4, context_rows: int = 2) -> None:
        self.grid_size, self.context_rows = grid_size, context_rows

    def __call__(
        self, batch_size: int, generator: torch.Generator, valid: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        split = self.context_rows * self.grid_size
        context = torch.arange(split).repeat(batch_size, 1)
        targets = torch.arange(split, self.grid_size**2).repeat(batch_size, 1, 1)
        return context, targets


class CosineLoss(nn.Module):
    """1 - cosine similarity of each prediction with its target."""

    def forward(self, predictions: Tensor, targets: Tensor) -> Tensor:
        return 1 - F.cosine_similarity(predictions, targets, dim=-1).mean()


class FrozenTokenTargets(JEPAModule):
    """Targets: a frozen encoder's tokens at the target positions, as they are."""

    teacher: TokenEncoder

    def __init__(
        self, student: nn.Module, predictor: nn.Module, teacher: nn.Module, **kwargs: Any
    ) -> None:
        super().__init__(student, predictor, loss=CosineLoss(), target_norm="none", **kwargs)
        self.teacher = cast(TokenEncoder, teacher.requires_grad_(False).eval())

    def compute_targets(self, images: Tensor, targets: Tensor) -> Tensor:
        with torch.no_grad():
            tokens = self.teacher(images)[:, self.teacher.num_prefix_tokens :]
        return gather_tokens(tokens, targets)


def draw(generator: MaskGenerator, images: Tensor, seed: int = 0) -> MaskedBatch:
    """A batch of ``images`` with masks from any generator meeting the contract."""
    context, targets = generator(len(images), torch.Generator().manual_seed(seed))
    return MaskedBatch(image=images, context=context, targets=targets)


def student_of(module: JEPAModule) -> ContextEncoder:
    """The student, typed by its contract."""
    return module.student
