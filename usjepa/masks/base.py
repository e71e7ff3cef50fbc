"""The mask-generator contract every generator meets."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor


@runtime_checkable
class MaskGenerator(Protocol):
    """Draws ``(context [B, K], targets [B, M, T])`` patch indices for a batch.

    Any object with a ``grid_size`` and this call meets the contract; the generators here
    also subclass it, so that a config can name them where a ``MaskGenerator`` is asked
    for. Index sets are right-padded with :data:`~usjepa.models.tokens.PAD` (``-1``).

    Attributes:
        grid_size: patches per side of the square grid the indices refer to.
    """

    grid_size: int

    def __call__(
        self, batch_size: int, generator: torch.Generator, valid: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Draw masks; ``valid [B, G, G]`` (bool) restricts them to the scan region."""
        ...
