"""Mask generators (pure torch, CPU-side, seeded) and the batch they go out with."""

from usjepa.masks.base import MaskGenerator
from usjepa.masks.batch import MaskedBatch
from usjepa.masks.multiblock import MultiBlockMaskGenerator, RandomMaskGenerator

__all__ = ["MaskGenerator", "MaskedBatch", "MultiBlockMaskGenerator", "RandomMaskGenerator"]
