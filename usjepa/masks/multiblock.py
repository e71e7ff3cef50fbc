"""I-JEPA multi-block masks, optionally conditioned on the scan region (USrc).

I-JEPA (Assran et al. 2023, sec. 3): ``M`` target blocks of scale ``(0.15, 0.2)`` and
aspect ``(0.75, 1.5)`` and one context block of scale ``(0.85, 1.0)``; the context is made
disjoint from the targets. Block sizes are shared within a batch and positions drawn per
image; index sets are cut to the batch's shortest so tensors stay rectangular.
US-JEPA's USrc restricts context and targets to patches inside the scan region.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from usjepa.masks.base import MaskGenerator


class MultiBlockMaskGenerator(MaskGenerator):
    """Samples context and target patch indices on a square patch grid.

    Args:
        grid_size: patches per side.
        num_targets: target blocks per image.
        target_scale, target_aspect: block area fraction and height/width ranges.
        context_scale, context_aspect: the same for the context block.
        min_keep: fewest patches a context or target set may have.
        allow_overlap: keep context patches that fall in a target (I-JEPA: False).
        min_valid_fraction: with a valid-patch map (USrc), a target block is placed only
            where at least this fraction of its patches is valid (where no placement
            qualifies, among the best-covered placements); its patches outside the region
            are then dropped.
    """

    def __init__(
        self,
        grid_size: int,
        num_targets: int = 4,
        target_scale: tuple[float, float] = (0.15, 0.2),
        target_aspect: tuple[float, float] = (0.75, 1.5),
        context_scale: tuple[float, float] = (0.85, 1.0),
        context_aspect: tuple[float, float] = (1.0, 1.0),
        min_keep: int = 4,
        allow_overlap: bool = False,
        min_valid_fraction: float = 0.5,
    ) -> None:
        self.grid_size, self.num_targets = grid_size, num_targets
        self.target_scale, self.target_aspect = target_scale, target_aspect
        self.context_scale, self.context_aspect = context_scale, context_aspect
        self.min_keep, self.allow_overlap = min_keep, allow_overlap
        self.min_valid_fraction = min_valid_fraction

    def _block_size(
        self, scale: tuple[float, float], aspect: tuple[float, float], gen: torch.Generator
    ) -> tuple[int, int]:
        u = torch.rand(2, generator=gen).tolist()
        area = (scale[0] + u[0] * (scale[1] - scale[0])) * self.grid_size**2
        log_a = math.log(aspect[0]) + u[1] * (math.log(aspect[1]) - math.log(aspect[0]))
        h = round(math.sqrt(area * math.exp(log_a)))
        w = round(math.sqrt(area / math.exp(log_a)))
        return max(1, min(h, self.grid_size - 1)), max(1, min(w, self.grid_size - 1))

    def _positions(
        self, h: int, w: int, n: int, gen: torch.Generator, valid: Tensor | None, batch: int
    ) -> Tensor:
        """``[B, n, 2]`` top-left corners of ``h x w`` blocks, one draw per block.

        With ``valid``, a corner is drawn uniformly among those whose block has at least
        ``min_valid_fraction`` of its patches valid, else among the best-covered corners.
        """
        g = self.grid_size
        rows, cols = g - h + 1, g - w + 1
        u = torch.rand(batch, n, rows * cols, generator=gen)
        if valid is not None:
            cover = F.avg_pool2d(valid[:, None].float(), (h, w), stride=1).flatten(1)
            ok = cover >= self.min_valid_fraction - 1e-6
            best = cover >= cover.max(1, keepdim=True).values - 1e-6
            allowed = torch.where(ok.any(1, keepdim=True), ok, best)  # [B, P]
            u = torch.where(allowed[:, None], u, u - 2.0)
        flat = u.argmax(-1)
        return torch.stack([flat // cols, flat % cols], -1)

    def _blocks(self, corners: Tensor, h: int, w: int) -> Tensor:
        """Boolean ``[B, n, G, G]`` maps of blocks at ``corners``."""
        r = torch.arange(self.grid_size)
        top, left = corners[..., 0, None], corners[..., 1, None]
        in_rows = (r >= top) & (r < top + h)  # [B, n, G]
        in_cols = (r >= left) & (r < left + w)
        return in_rows[..., :, None] & in_cols[..., None, :]

    def __call__(
        self, batch_size: int, generator: torch.Generator, valid: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Draw masks for a batch (vectorised over images and blocks).

        Args:
            batch_size: images in the batch.
            generator: seeded CPU generator; the same seed gives the same masks.
            valid: optional ``[B, G, G]`` bool map of patches inside the scan region.
                An image with fewer than ``2 * min_keep`` valid patches falls back to the
                full grid (its region is too small to hold context and targets).

        Returns:
            ``(context [B, K], targets [B, M, T])`` long patch indices, sorted per set.
        """
        b = batch_size
        th, tw = self._block_size(self.target_scale, self.target_aspect, generator)
        ch, cw = self._block_size(self.context_scale, self.context_aspect, generator)
        if valid is not None:
            valid = valid.bool()
            small = valid.flatten(1).sum(1) < 2 * self.min_keep
            valid = torch.where(small[:, None, None], torch.ones_like(valid), valid)
        targets = self._blocks(
            self._positions(th, tw, self.num_targets, generator, valid, b), th, tw
        )
        context = self._blocks(self._positions(ch, cw, 1, generator, None, b), ch, cw)[:, 0]
        if valid is not None:
            targets = targets & valid[:, None]
            context = context & valid
        union = targets.any(1)
        if not self.allow_overlap:
            context = context & ~union
        allowed = valid if valid is not None else torch.ones_like(context)
        # context swallowed by targets: use every allowed patch outside the targets
        thin = context.flatten(1).sum(1) < self.min_keep
        context = torch.where(thin[:, None, None], allowed & ~union, context)
        ctx_flat, tgt_flat = context.flatten(1), targets.flatten(2)
        k = max(1, int(ctx_flat.sum(1).min()))
        t = max(1, int(tgt_flat.sum(-1).min()))
        return _subset(ctx_flat, k, generator), _subset(tgt_flat, t, generator)


def _subset(mask: Tensor, n: int, gen: torch.Generator) -> Tensor:
    """Sorted indices of a random size-``n`` subset of each row's True entries (``mask``
    ``[..., N]``). I-JEPA keeps a prefix, which biases the cut towards the top of the
    image; a random subset does not. Rows with fewer than ``n`` entries are topped up
    with random other indices."""
    scores = torch.rand(mask.shape, generator=gen) + mask.float()
    return scores.topk(n, dim=-1).indices.sort(-1).values


class RandomMaskGenerator(MaskGenerator):
    """MAE random masking: ``mask_ratio`` of the (valid) patches are targets, the rest context.

    Returns the same ``(context [B, K], targets [B, 1, T])`` layout as
    :class:`MultiBlockMaskGenerator`, so the data pipeline serves both methods.
    """

    def __init__(self, grid_size: int, mask_ratio: float = 0.75) -> None:
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        self.grid_size, self.mask_ratio = grid_size, mask_ratio

    def __call__(
        self, batch_size: int, generator: torch.Generator, valid: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        n = self.grid_size**2
        scores = torch.rand(batch_size, n, generator=generator)
        if valid is not None:
            ok = valid.reshape(batch_size, n)
            ok = torch.where(ok.sum(1, keepdim=True) >= 4, ok, torch.ones_like(ok))
            scores = scores + (~ok).float() * 2.0  # invalid patches sort last
            n_valid = int(ok.sum(1).min())
        else:
            n_valid = n
        order = scores.argsort(dim=1)
        n_mask = max(1, min(n_valid - 1, round(n_valid * self.mask_ratio)))
        ctx = order[:, n_mask:n_valid].sort(1).values
        tgt = order[:, :n_mask].sort(1).values
        return ctx, tgt.unsqueeze(1)
