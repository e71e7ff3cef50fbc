"""What one pretraining step receives: images and the patch-index sets of their masks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from torch import Tensor


@dataclass
class MaskedBatch:
    """A batch of images with the masks drawn for them (the corpus collator makes it;
    Lightning moves it to the device field by field).

    Attributes:
        image: ``[B, C, H, W]`` images (uint8 until the DataModule normalises them on the
            device, float after).
        context: ``[B, K]`` context patch indices, right-padded with ``-1``.
        targets: ``[B, M, T]`` indices of ``M`` target blocks, right-padded with ``-1``.
        bad_rows: manifest rows of frames skipped as unreadable for this batch.
        rows: manifest row of each image (``-1`` where unknown).
        skipped_frames: unreadable frames skipped so far (set by the DataModule).
    """

    image: Tensor
    context: Tensor
    targets: Tensor
    bad_rows: Tensor | None = None
    rows: Tensor | None = None
    skipped_frames: Tensor | None = None

    def __len__(self) -> int:
        return len(self.image)

    @classmethod
    def of(cls, batch: MaskedBatch | Mapping[str, Any]) -> MaskedBatch:
        """``batch`` as a :class:`MaskedBatch`: itself, or built from a mapping with the
        same keys (``image``, ``context``, ``targets`` and optionally the others), as a
        DataModule of one's own may give.

        Raises:
            KeyError: naming the keys a mapping lacks.
        """
        if isinstance(batch, MaskedBatch):
            return batch
        names = {f.name for f in fields(cls)}
        missing = [k for k in ("image", "context", "targets") if k not in batch]
        if missing:
            raise KeyError(
                f"a pretraining batch needs image, context and targets; it lacks "
                f"{', '.join(missing)} (a MaskCollator makes them)"
            )
        return cls(**{k: v for k, v in batch.items() if k in names})
