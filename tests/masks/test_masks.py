import numpy as np
import pytest
import torch

from usjepa.masks import MultiBlockMaskGenerator, RandomMaskGenerator
from usjepa.models.tokens import PAD, pad_indices

GRID = 8


def _valid_fan(batch: int) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(GRID), torch.arange(GRID), indexing="ij")
    fan = (xx - 3.5).abs() <= yy * 0.6 + 1  # widens with depth, like a sector
    return fan.expand(batch, -1, -1).clone()


@pytest.mark.parametrize(
    "make", [lambda: MultiBlockMaskGenerator(GRID), lambda: RandomMaskGenerator(GRID, 0.75)]
)
@pytest.mark.parametrize("use_valid", [False, True])
def test_contract_disjoint_in_grid_padded(make, use_valid):
    gen = make()
    valid = _valid_fan(16) if use_valid else None
    ctx, tgt = gen(16, torch.Generator().manual_seed(0), valid)
    assert ctx.ndim == 2 and tgt.ndim == 3 and ctx.shape[0] == tgt.shape[0] == 16
    assert ctx.dtype == tgt.dtype == torch.long
    assert ctx.min() >= PAD and ctx.max() < GRID * GRID
    assert tgt.min() >= PAD and tgt.max() < GRID * GRID
    for i in range(16):
        c_row = ctx[i][ctx[i] >= 0]
        assert len(c_row) >= 1
        assert torch.equal(ctx[i][: len(c_row)], c_row)  # padding only at the end
        assert torch.equal(c_row, c_row.sort().values)
        c = set(c_row.tolist())
        assert len(c) == len(c_row)  # no duplicates
        for block in tgt[i]:
            b_row = block[block >= 0]
            assert len(b_row) >= 1 and torch.equal(block[: len(b_row)], b_row)
            assert not c & set(b_row.tolist())
            if use_valid:
                assert valid[i].flatten()[b_row].all()
        if use_valid:
            assert valid[i].flatten()[c_row].all()


def test_seeded_generator_is_deterministic():
    gen = MultiBlockMaskGenerator(GRID)
    a = gen(4, torch.Generator().manual_seed(5))
    b = gen(4, torch.Generator().manual_seed(5))
    c = gen(4, torch.Generator().manual_seed(6))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    same = all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(a, c))
    assert not same


def test_block_sizes_follow_scales():
    gen = MultiBlockMaskGenerator(14, num_targets=4, target_scale=(0.15, 0.2))
    _, tgt = gen(8, torch.Generator().manual_seed(1))
    # a target block covers 15-20 % of 196 patches (rounding to whole rows/cols allowed)
    sizes = (tgt >= 0).sum(-1)
    assert ((sizes >= 20) & (sizes <= 48)).all()
    assert (sizes == sizes[0, 0]).all()  # plain masks: one block size for the batch
    assert tgt.shape[1] == 4 and (tgt >= 0).all()


def _mixed_regions(batch: int, grid: int = 14) -> torch.Tensor:
    """Half the batch full frames, half narrow fans: the case the batch cut starved."""
    yy, xx = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    fan = (xx - (grid - 1) / 2).abs() <= yy * 0.45 + 0.5
    full = torch.ones(grid, grid, dtype=torch.bool)
    return torch.stack([full if i % 2 else fan for i in range(batch)])


def test_each_image_keeps_its_own_draw_in_a_batch():
    valid = _mixed_regions(32)
    padded = MultiBlockMaskGenerator(14)(32, torch.Generator().manual_seed(4), valid)
    # the same draw, stacked one image at a time, gives the same per-image sets
    cut = MultiBlockMaskGenerator(14, truncate=True)
    ctx_cut, tgt_cut = cut(32, torch.Generator().manual_seed(4), valid)
    ctx, tgt = padded
    own_ctx = (ctx >= 0).sum(1)
    assert (own_ctx > ctx_cut.shape[1]).float().mean() > 0.9  # the cut loses context
    assert (tgt_cut >= 0).all() and tgt_cut.shape[2] == int((tgt >= 0).sum(-1).min())
    # full frames keep far more context than fans: nothing is cut to the smallest
    assert own_ctx[1::2].float().median() > 1.5 * own_ctx[::2].float().median()


def test_usrc_block_sizes_follow_the_region():
    valid = _mixed_regions(32)
    region = valid.flatten(1).sum(1)
    gen = MultiBlockMaskGenerator(14, num_targets=4)
    ctx, tgt = gen(32, torch.Generator().manual_seed(5), valid)
    share = (ctx >= 0).sum(1) / region
    # a fan keeps about the context share a full frame keeps
    assert share[::2].median() > 0.6 * share[1::2].median()
    assert share.median() >= 0.35
    block = (tgt >= 0).sum(-1).float().mean(1)
    assert block[::2].mean() < 0.8 * block[1::2].mean()  # smaller region, smaller blocks
    grid_sized = MultiBlockMaskGenerator(14, num_targets=4, region_relative=False)
    ctx_g, _ = grid_sized(32, torch.Generator().manual_seed(5), valid)
    assert ((ctx_g >= 0).sum(1) / region)[::2].median() < share[::2].median()


def test_union_targets_for_stage_one():
    gen = MultiBlockMaskGenerator(14, num_targets=4, union_targets=True)
    ctx, tgt = gen(8, torch.Generator().manual_seed(2))
    assert tgt.shape[1] == 1
    multi = MultiBlockMaskGenerator(14, num_targets=4)(8, torch.Generator().manual_seed(2))[1]
    for i in range(8):
        want = set(multi[i][multi[i] >= 0].tolist())
        assert set(tgt[i, 0][tgt[i, 0] >= 0].tolist()) == want
        assert not want & set(ctx[i][ctx[i] >= 0].tolist())


def test_random_masks_keep_each_images_ratio():
    valid = _mixed_regions(8)
    ctx, tgt = RandomMaskGenerator(14, 0.75)(8, torch.Generator().manual_seed(0), valid)
    region = valid.flatten(1).sum(1)
    masked, visible = (tgt[:, 0] >= 0).sum(1), (ctx >= 0).sum(1)
    assert torch.equal(masked + visible, region)
    assert torch.allclose(masked / region, torch.full((8,), 0.75), atol=0.02)


def test_pad_indices():
    mask = torch.tensor([[True, False, True, False], [False, False, False, True]])
    assert pad_indices(mask).tolist() == [[0, 2], [3, PAD]]
    assert pad_indices(mask, 3).tolist() == [[0, 2, PAD], [3, PAD, PAD]]


def test_tiny_region_falls_back_to_full_grid():
    valid = torch.zeros(2, GRID, GRID, dtype=torch.bool)
    valid[:, 0, 0] = True
    ctx, tgt = MultiBlockMaskGenerator(GRID)(2, torch.Generator().manual_seed(0), valid)
    assert ((ctx >= 0).sum(1) >= 4).all() and ((tgt >= 0).sum(-1) >= 1).all()


def test_usrc_targets_prefer_placements_inside_the_region():
    # a region covering only the left half: every target block sits mostly inside it
    valid = torch.zeros(32, 14, 14, dtype=torch.bool)
    valid[:, :, :7] = True
    gen = MultiBlockMaskGenerator(14, num_targets=4, min_valid_fraction=1.0)
    ctx, tgt = gen(32, torch.Generator().manual_seed(0), valid)
    cols_t, cols_c = tgt[tgt >= 0] % 14, ctx[ctx >= 0] % 14
    assert (cols_t < 7).all() and (cols_c < 7).all()
    # plain masks on the same batch do use the right half
    ctx_p, tgt_p = gen(32, torch.Generator().manual_seed(0), None)
    assert (tgt_p % 14 >= 7).any() and (ctx_p % 14 >= 7).any()


def test_per_image_positions_differ_within_a_batch():
    _, tgt = MultiBlockMaskGenerator(14)(16, torch.Generator().manual_seed(3))
    firsts = {tuple(t[0].tolist()) for t in tgt}
    assert len(firsts) > 8


def test_targets_are_rectangular_blocks_without_valid_map():
    _, tgt = MultiBlockMaskGenerator(14, num_targets=2)(8, torch.Generator().manual_seed(2))
    for block in tgt.reshape(-1, tgt.shape[-1]):
        r, c = block // 14, block % 14
        assert (r.max() - r.min() + 1) * (c.max() - c.min() + 1) == len(block)


def test_usrc_masks_on_real_scans_keep_context_inside_the_region():
    """On the real lung scans (tests/fixtures/real_scans) with our scan masks, at the
    paper's grid: every context and target patch is in the region, and the context keeps
    the share of the region that plain masks keep of a full frame."""
    from pathlib import Path

    import cv2
    import pandas as pd
    import torch.nn.functional as F

    root = Path(__file__).resolve().parents[1] / "fixtures" / "real_scans"
    index = pd.read_csv(root / "index.csv")
    masks = [cv2.imread(str(root / m), cv2.IMREAD_GRAYSCALE) for m in index["mask"]]
    cover = F.adaptive_avg_pool2d(torch.from_numpy(np.stack(masks))[:, None].float() / 255, 14)
    valid = cover[:, 0] >= 0.5
    ctx, tgt = MultiBlockMaskGenerator(14)(len(valid), torch.Generator().manual_seed(0), valid)
    flat = valid.flatten(1)
    for i in range(len(valid)):
        c, t = ctx[i][ctx[i] >= 0], tgt[i][tgt[i] >= 0]
        assert flat[i, c].all() and flat[i, t].all()
    share = (ctx >= 0).sum(1) / flat.sum(1)
    assert share.median() >= 0.35 and torch.quantile(share.float(), 0.05) >= 0.2
