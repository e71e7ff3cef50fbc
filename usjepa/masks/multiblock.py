"""I-JEPA multi-block masks, optionally conditioned on the scan region (USrc).

I-JEPA (Assran et al. 2023, sec. 3): ``M`` target blocks of scale ``(0.15, 0.2)`` and
aspect ``(0.75, 1.5)`` and one context block of scale ``(0.85, 1.0)``; the context is made
disjoint from the targets; block sizes are shared within a batch, positions drawn per
image. US-JEPA's USrc restricts context and targets to patches inside the scan region.

Two choices differ from the I-JEPA code, each one argument away from it (see
``docs/fidelity.md``): every image keeps the patches of its own draw, right-padded with
``-1`` (``truncate=True`` cuts to the batch's shortest as I-JEPA does); and under USrc,
block areas are fractions of the image's scan region rather than of the whole grid
(``region_relative=False`` sizes them on the grid).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from usjepa.masks.base import MaskGenerator
from usjepa.models.tokens import pad_indices


class MultiBlockMaskGenerator(MaskGenerator):
    """Samples context and target patch indices on a square patch grid.

    Args:
        grid_size: patches per side.
        num_targets: target blocks per image.
        target_scale: target block area fraction range.
        target_aspect: target block height/width range.
        context_scale: the same for the context block's area.
        context_aspect: the same for the context block's height/width.
        min_keep: fewest patches a context set may have before it falls back to every
            allowed patch outside the targets.
        allow_overlap: keep context patches that fall in a target (I-JEPA: False).
        min_valid_fraction: with a valid-patch map (USrc), a target block is placed only
            where at least this fraction of its patches is valid (where no placement
            qualifies, among the best-covered placements); its patches outside the region
            are then dropped.
        region_relative: under USrc, a target block's area is a fraction of the image's
            scan-region patches and the context block is sized on the region's bounding
            box, so a fan keeps the context share a full frame keeps. ``False``: sizes
            are fractions of the whole grid (and of the grid side for the context).
        truncate: cut every set to the batch's shortest, as I-JEPA does, instead of
            right-padding each image's own draw with ``-1``.
        union_targets: return the union of the target blocks as one set, ``[B, 1, T]``.
        outside_context: return every allowed patch outside the context as the one target
            set, ``[B, 1, T]``: what SALT's public stage-1 code reconstructs (its
            ``MultiBlockMasking`` masks all but the context block).
        aspect_sampling: ``"log_uniform"`` draws a block's aspect log-uniformly and apart
            from its scale; ``"tied"`` draws it uniformly from the same random number as
            the scale, as I-JEPA's and SALT's samplers do.
        shared: one draw of positions for the whole batch, as SALT's public code does
            (I-JEPA and the default draw each image's own). Plain masks only: a shared
            mask cannot follow each image's scan region.
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
        min_valid_fraction: float = 0.75,
        region_relative: bool = True,
        truncate: bool = False,
        union_targets: bool = False,
        outside_context: bool = False,
        aspect_sampling: str = "log_uniform",
        shared: bool = False,
    ) -> None:
        if aspect_sampling not in ("log_uniform", "tied"):
            raise ValueError(f"aspect_sampling {aspect_sampling!r}: choose 'log_uniform' or 'tied'")
        self.grid_size, self.num_targets = grid_size, num_targets
        self.target_scale, self.target_aspect = target_scale, target_aspect
        self.context_scale, self.context_aspect = context_scale, context_aspect
        self.min_keep, self.allow_overlap = min_keep, allow_overlap
        self.min_valid_fraction = min_valid_fraction
        self.region_relative, self.truncate = region_relative, truncate
        self.union_targets, self.outside_context = union_targets, outside_context
        self.aspect_sampling, self.shared = aspect_sampling, shared

    def _draw(
        self, scale: tuple[float, float], aspect: tuple[float, float], gen: torch.Generator
    ) -> tuple[float, float]:
        """One batch-wide draw: (area fraction, height/width ratio)."""
        u = torch.rand(2, generator=gen).tolist()
        frac = scale[0] + u[0] * (scale[1] - scale[0])
        if self.aspect_sampling == "tied":  # I-JEPA / SALT: one number for both
            return frac, aspect[0] + u[0] * (aspect[1] - aspect[0])
        log_a = math.log(aspect[0]) + u[1] * (math.log(aspect[1]) - math.log(aspect[0]))
        return frac, math.exp(log_a)

    def _sides(self, area: Tensor, ratio: float) -> tuple[Tensor, Tensor]:
        """Per-image block height and width ``[B]`` for ``area`` patches, in [1, G - 1]."""
        h = (area * ratio).sqrt().round().long().clamp(1, self.grid_size - 1)
        w = (area / ratio).sqrt().round().long().clamp(1, self.grid_size - 1)
        return h, w

    def _positions(
        self, h: Tensor, w: Tensor, n: int, gen: torch.Generator, valid: Tensor | None
    ) -> Tensor:
        """``[B, n, 2]`` top-left corners of per-image ``h x w`` blocks (``h, w [B]``).

        A corner is drawn uniformly among those whose block fits in the grid and, with
        ``valid``, has at least ``min_valid_fraction`` of its patches valid (else among
        the best-covered corners). Coverage of every corner comes from one integral image.
        """
        g, b = self.grid_size, len(h)
        r = torch.arange(g)
        top, left = r.view(1, g, 1), r.view(1, 1, g)
        hh, ww = h.view(b, 1, 1), w.view(b, 1, 1)
        fits = (top + hh <= g) & (left + ww <= g)  # [B, G, G]
        u = torch.rand(b, n, g * g, generator=gen)
        allowed = fits.flatten(1)
        if valid is not None:
            s = torch.zeros(b, g + 1, g + 1)
            s[:, 1:, 1:] = valid.float().cumsum(1).cumsum(2)
            bot, right = (top + hh).clamp(max=g), (left + ww).clamp(max=g)

            def at(i: Tensor, j: Tensor) -> Tensor:
                flat = (i * (g + 1) + j).expand(b, g, g).reshape(b, -1)
                return s.flatten(1).gather(1, flat).view(b, g, g)

            inside = at(bot, right) - at(top, right) - at(bot, left) + at(top, left)
            cover = torch.where(fits, inside / (hh * ww).float(), -1.0).flatten(1)
            ok = cover >= self.min_valid_fraction - 1e-6
            best = cover >= cover.max(1, keepdim=True).values - 1e-6
            allowed = torch.where(ok.any(1, keepdim=True), ok, best)
        u = torch.where(allowed[:, None], u, u - 2.0)
        flat = u.argmax(-1)
        return torch.stack([flat // g, flat % g], -1)

    def _blocks(self, corners: Tensor, h: Tensor, w: Tensor) -> Tensor:
        """Boolean ``[B, n, G, G]`` maps of per-image ``h x w`` blocks at ``corners``."""
        r = torch.arange(self.grid_size)
        top, left = corners[..., 0, None], corners[..., 1, None]
        in_rows = (r >= top) & (r < top + h.view(-1, 1, 1))  # [B, n, G]
        in_cols = (r >= left) & (r < left + w.view(-1, 1, 1))
        return in_rows[..., :, None] & in_cols[..., None, :]

    def _context_block(self, gen: torch.Generator, valid: Tensor | None, b: int) -> Tensor:
        """``[B, G, G]`` context block: a fraction of the grid, or under region-relative
        USrc of the scan region's bounding box, placed inside that box."""
        g = self.grid_size
        frac, ratio = self._draw(self.context_scale, self.context_aspect, gen)
        if valid is None or not self.region_relative:
            h, w = self._sides(torch.full((b,), frac * g * g), ratio)
            return self._blocks(self._positions(h, w, 1, gen, None), h, w)[:, 0]
        rows, cols = valid.any(2), valid.any(1)  # [B, G]
        r = torch.arange(g).expand(b, g)
        r0 = torch.where(rows, r, g).min(1).values
        r1 = torch.where(rows, r, -1).max(1).values
        c0 = torch.where(cols, r, g).min(1).values
        c1 = torch.where(cols, r, -1).max(1).values
        box_h, box_w = (r1 - r0 + 1).float(), (c1 - c0 + 1).float()
        side = math.sqrt(frac)
        h = (box_h * side * math.sqrt(ratio)).round().long().clamp(1, g)
        w = (box_w * side / math.sqrt(ratio)).round().long().clamp(1, g)
        h, w = torch.minimum(h, box_h.long()), torch.minimum(w, box_w.long())
        u = torch.rand(b, 2, generator=gen)
        top = r0 + (u[:, 0] * (box_h.long() - h + 1).float()).long()
        left = c0 + (u[:, 1] * (box_w.long() - w + 1).float()).long()
        return self._blocks(torch.stack([top, left], -1)[:, None], h, w)[:, 0]

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
            ``(context [B, K], targets [B, M, T])`` long patch indices, sorted per set
            and right-padded with ``-1`` (``M`` is 1 with ``union_targets`` or
            ``outside_context``).
        """
        if not self.shared:
            return self._draw_batch(batch_size, generator, valid)
        if valid is not None:
            raise ValueError(
                "shared masks cannot follow each image's scan region: use shared: false "
                "with scan_region: true, or plain masks (scan_region: false)"
            )
        context, targets = self._draw_batch(1, generator, None)
        return context.expand(batch_size, -1), targets.expand(batch_size, -1, -1)

    def _draw_batch(
        self, batch_size: int, generator: torch.Generator, valid: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """Each image's own draw (see :meth:`__call__`)."""
        b, g = batch_size, self.grid_size
        if valid is not None:
            valid = valid.bool()
            small = valid.flatten(1).sum(1) < 2 * self.min_keep
            valid = torch.where(small[:, None, None], torch.ones_like(valid), valid)
        frac, ratio = self._draw(self.target_scale, self.target_aspect, generator)
        region = torch.full((b,), float(g * g))
        if valid is not None and self.region_relative:
            region = valid.flatten(1).sum(1).float()
        th, tw = self._sides(frac * region, ratio)
        corners = self._positions(th, tw, self.num_targets, generator, valid)
        targets = self._blocks(corners, th, tw)
        context = self._context_block(generator, valid, b)
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
        if self.outside_context:
            targets = (allowed & ~context)[:, None]
        elif self.union_targets:
            targets = union[:, None]
        return self._stack(context.flatten(1), targets.flatten(2), generator)

    def _stack(self, ctx: Tensor, tgt: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        if not self.truncate:
            return pad_indices(ctx), pad_indices(tgt)
        k = max(1, int(ctx.sum(1).min()))
        t = max(1, int(tgt.sum(-1).min()))
        return _subset(ctx, k, gen), _subset(tgt, t, gen)


def _subset(mask: Tensor, n: int, gen: torch.Generator) -> Tensor:
    """Sorted indices of a random size-``n`` subset of each row's True entries (``mask``
    ``[..., N]``). I-JEPA keeps a prefix, which biases the cut towards the top of the
    image; a random subset does not. Rows with fewer than ``n`` entries are topped up
    with random other indices."""
    scores = torch.rand(mask.shape, generator=gen) + mask.float()
    return scores.topk(n, dim=-1).indices.sort(-1).values


class RandomMaskGenerator(MaskGenerator):
    """MAE random masking: ``mask_ratio`` of each image's (valid) patches are targets, the
    rest of its valid patches context.

    Returns the same ``(context [B, K], targets [B, 1, T])`` layout as
    :class:`MultiBlockMaskGenerator`, right-padded with ``-1`` per image.

    Args:
        grid_size: patches per side.
        mask_ratio: share of an image's patches to mask (MAE: 0.75).
    """

    def __init__(self, grid_size: int, mask_ratio: float = 0.75) -> None:
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        self.grid_size, self.mask_ratio = grid_size, mask_ratio

    def __call__(
        self, batch_size: int, generator: torch.Generator, valid: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Draw masks; ``valid [B, G, G]`` restricts both sets to the scan region."""
        n = self.grid_size**2
        scores = torch.rand(batch_size, n, generator=generator)
        ok = torch.ones(batch_size, n, dtype=torch.bool)
        if valid is not None:
            ok = valid.reshape(batch_size, n).bool()
            ok = torch.where(ok.sum(1, keepdim=True) >= 4, ok, torch.ones_like(ok))
        n_valid = ok.sum(1, keepdim=True)
        n_mask = (n_valid * self.mask_ratio).round().long().clamp(min=1)
        n_mask = torch.minimum(n_mask, n_valid - 1)
        # rank of each patch in a random order of the image's valid patches
        rank = torch.where(ok, scores, scores + 2.0).argsort(1).argsort(1)
        masked = rank < n_mask
        visible = (rank >= n_mask) & (rank < n_valid)
        return pad_indices(visible), pad_indices(masked)[:, None]
