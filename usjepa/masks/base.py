"""The mask-generator interface every generator implements."""

from __future__ import annotations

import torch
from torch import Tensor


class MaskGenerator:
    """Draws ``(context [B, K], targets [B, M, T])`` patch indices for a batch.

    Args:
        grid_size: patches per side of the square grid the indices refer to.
    """

    grid_size: int

    def __call__(
        self, batch_size: int, generator: torch.Generator, valid: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Draw masks; ``valid [B, G, G]`` (bool) restricts them to the scan region."""
        raise NotImplementedError
