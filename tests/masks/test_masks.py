import pytest
import torch

from usjepa.masks import MultiBlockMaskGenerator, RandomMaskGenerator

GRID = 8


def _valid_fan(batch: int) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(GRID), torch.arange(GRID), indexing="ij")
    fan = (xx - 3.5).abs() <= yy * 0.6 + 1  # widens with depth, like a sector
    return fan.expand(batch, -1, -1).clone()


@pytest.mark.parametrize(
    "make", [lambda: MultiBlockMaskGenerator(GRID), lambda: RandomMaskGenerator(GRID, 0.75)]
)
@pytest.mark.parametrize("use_valid", [False, True])
def test_contract_disjoint_in_grid_fixed_length(make, use_valid):
    gen = make()
    valid = _valid_fan(16) if use_valid else None
    ctx, tgt = gen(16, torch.Generator().manual_seed(0), valid)
    assert ctx.ndim == 2 and tgt.ndim == 3 and ctx.shape[0] == tgt.shape[0] == 16
    assert ctx.dtype == tgt.dtype == torch.long
    assert ctx.min() >= 0 and ctx.max() < GRID * GRID
    assert tgt.min() >= 0 and tgt.max() < GRID * GRID
    assert ctx.shape[1] >= 1 and tgt.shape[2] >= 1
    for i in range(16):
        c = set(ctx[i].tolist())
        assert len(c) == ctx.shape[1]  # no duplicates
        for block in tgt[i]:
            assert not c & set(block.tolist())
        if use_valid:
            flat = valid[i].flatten()
            assert flat[ctx[i]].all() and flat[tgt[i].flatten()].all()


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
    assert 20 <= tgt.shape[2] <= 48
    assert tgt.shape[1] == 4


def test_tiny_region_falls_back_to_full_grid():
    valid = torch.zeros(2, GRID, GRID, dtype=torch.bool)
    valid[:, 0, 0] = True
    ctx, tgt = MultiBlockMaskGenerator(GRID)(2, torch.Generator().manual_seed(0), valid)
    assert ctx.shape[1] >= 1 and tgt.shape[2] >= 1


def test_usrc_targets_prefer_placements_inside_the_region():
    # a region covering only the left half: every target block sits mostly inside it
    valid = torch.zeros(32, 14, 14, dtype=torch.bool)
    valid[:, :, :7] = True
    gen = MultiBlockMaskGenerator(14, num_targets=4, min_valid_fraction=1.0)
    ctx, tgt = gen(32, torch.Generator().manual_seed(0), valid)
    cols_t, cols_c = tgt % 14, ctx % 14
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
