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
        min_valid_fraction: with a valid-patch map (USrc), a target placement must have at
            least this fraction of its patches valid; placements are redrawn up to
            ``max_tries`` times, then the best one seen is used.
        max_tries: redraws per target block.
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
        max_tries: int = 20,
    ) -> None:
        self.grid_size, self.num_targets = grid_size, num_targets
        self.target_scale, self.target_aspect = target_scale, target_aspect
        self.context_scale, self.context_aspect = context_scale, context_aspect
        self.min_keep, self.allow_overlap = min_keep, allow_overlap
        self.min_valid_fraction, self.max_tries = min_valid_fraction, max_tries

    def _block_size(
        self, scale: tuple[float, float], aspect: tuple[float, float], gen: torch.Generator
    ) -> tuple[int, int]:
        u = torch.rand(2, generator=gen).tolist()
        area = (scale[0] + u[0] * (scale[1] - scale[0])) * self.grid_size**2
        log_a = math.log(aspect[0]) + u[1] * (math.log(aspect[1]) - math.log(aspect[0]))
        h = round(math.sqrt(area * math.exp(log_a)))
        w = round(math.sqrt(area / math.exp(log_a)))
        return max(1, min(h, self.grid_size - 1)), max(1, min(w, self.grid_size - 1))

    def _place(self, h: int, w: int, gen: torch.Generator, valid: Tensor | None) -> Tensor:
        g = self.grid_size
        best, best_frac = None, -1.0
        for _ in range(self.max_tries if valid is not None else 1):
            top = int(torch.randint(0, g - h + 1, (1,), generator=gen))
            left = int(torch.randint(0, g - w + 1, (1,), generator=gen))
            block = torch.zeros(g, g, dtype=torch.bool)
            block[top : top + h, left : left + w] = True
            if valid is None:
                return block
            frac = float((block & valid).sum()) / (h * w)
            if frac > best_frac:
                best, best_frac = block, frac
            if frac >= self.min_valid_fraction:
                break
        assert best is not None and valid is not None
        return best & valid

    def __call__(
        self, batch_size: int, generator: torch.Generator, valid: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Draw masks for a batch.

        Args:
            batch_size: images in the batch.
            generator: seeded CPU generator; the same seed gives the same masks.
            valid: optional ``[B, G, G]`` bool map of patches inside the scan region.

        Returns:
            ``(context [B, K], targets [B, M, T])`` long patch indices, sorted per set.
        """
        th, tw = self._block_size(self.target_scale, self.target_aspect, generator)
        ch, cw = self._block_size(self.context_scale, self.context_aspect, generator)
        contexts, targets = [], []
        for i in range(batch_size):
            v = None if valid is None else valid[i]
            if v is not None and int(v.sum()) < 2 * self.min_keep:
                v = None  # region too small to condition on: fall back to the full grid
            blocks = [self._place(th, tw, generator, v) for _ in range(self.num_targets)]
            union = torch.stack(blocks).any(0)
            ctx = self._place(ch, cw, generator, None)
            if v is not None:
                ctx = ctx & v
            if not self.allow_overlap:
                ctx = ctx & ~union
            if int(ctx.sum()) < self.min_keep:
                # context swallowed by targets: use every allowed patch outside the targets
                ctx = (v if v is not None else torch.ones_like(ctx)) & ~union
            contexts.append(ctx.flatten().nonzero().squeeze(1))
            targets.append([b.flatten().nonzero().squeeze(1) for b in blocks])
        k = max(1, min(len(c) for c in contexts))
        t = max(1, min(len(b) for bl in targets for b in bl))
        ctx_out = torch.stack([_subset(c, k, generator) for c in contexts])
        tgt_out = torch.stack(
            [torch.stack([_subset(b, t, generator) for b in bl]) for bl in targets]
        )
        return ctx_out, tgt_out


def _subset(idx: Tensor, n: int, gen: torch.Generator) -> Tensor:
    """A random size-``n`` subset of ``idx``, sorted (I-JEPA keeps a prefix, which biases
    the cut towards the top of the image; a random subset does not)."""
    if len(idx) == n:
        return idx
    if len(idx) == 0:
        return torch.zeros(n, dtype=torch.long)
    pick = torch.randperm(len(idx), generator=gen)[:n]
    return idx[pick].sort().values


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
