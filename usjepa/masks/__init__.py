"""Mask generators (pure torch, CPU-side, seeded)."""

from usjepa.masks.base import MaskGenerator
from usjepa.masks.multiblock import MultiBlockMaskGenerator, RandomMaskGenerator

__all__ = ["MaskGenerator", "MultiBlockMaskGenerator", "RandomMaskGenerator"]
