import json

import pytest
import timm
import torch

from tests.conftest import tiny_encoder, tiny_predictor
from usjepa.models import CheckpointError, ViTEncoder, export_encoder, load_exported
from usjepa.models.posembed import sincos_2d


def test_keep_all_tokens_equals_full_forward_and_subset_changes_length():
    enc = tiny_encoder().eval()
    x = torch.randn(3, 1, 32, 32)
    full = enc(x)
    assert full.shape == (3, 1 + 16, 32)
    keep = torch.arange(16).expand(3, -1)
    assert torch.allclose(enc(x, keep), full, atol=1e-6)
    part = enc(x, torch.tensor([[0, 5, 9]] * 3))
    assert part.shape == (3, 4, 32)


def test_init_seed_is_private_and_reproducible():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = tiny_encoder(seed=7)
    after = torch.rand(1)
    b = tiny_encoder(seed=7)
    assert torch.equal(before, after)  # global RNG untouched
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_export_loads_in_timm_and_matches(tmp_path):
    enc = tiny_encoder(seed=3).eval()
    path = export_encoder(enc, tmp_path / "enc.safetensors")
    cfg = json.loads(path.with_suffix(".json").read_text())
    model = timm.create_model(
        cfg["architecture"],
        pretrained=True,
        pretrained_cfg_overlay=dict(file=str(path)),
        **cfg["kwargs"],
    ).eval()
    x = torch.randn(2, 1, 32, 32)
    ours = enc(x)
    assert torch.allclose(model.forward_features(x), ours, atol=1e-5)
    assert torch.allclose(model(x), ours[:, 0], atol=1e-5)
    again = load_exported(path).eval()
    assert torch.allclose(again(x), ours, atol=1e-6)


def test_mismatched_checkpoint_lists_keys(tmp_path):
    path = export_encoder(tiny_encoder(), tmp_path / "small.safetensors")
    with pytest.raises(CheckpointError, match="shape mismatches"):
        ViTEncoder(
            img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=2, checkpoint=str(path)
        )
    with pytest.raises(CheckpointError, match="missing keys"):
        ViTEncoder(
            img_size=32, patch_size=8, embed_dim=32, depth=3, num_heads=2, checkpoint=str(path)
        )
    with pytest.raises(CheckpointError, match="not found"):
        ViTEncoder(img_size=32, patch_size=8, checkpoint=str(tmp_path / "nope.safetensors"))


def test_predictor_shapes_and_widths():
    pred = tiny_predictor(in_dim=32, out_dim=48)
    ctx = torch.randn(2, 5, 32)
    out = pred(ctx, torch.tensor([[0, 1, 2, 3, 4]] * 2), torch.tensor([[[8, 9], [12, 13]]] * 2))
    assert out.shape == (2, 2, 2, 48)


def test_sincos_embedding_distinguishes_positions():
    emb = sincos_2d(4, 16)
    assert emb.shape == (16, 16)
    d = torch.cdist(emb, emb)
    assert (d + torch.eye(16) * 10).min() > 0.1


def test_forward_blocks_last_equals_forward():
    enc = tiny_encoder().eval()
    x = torch.randn(2, 1, 32, 32)
    outs = enc.forward_blocks(x, 2)
    assert len(outs) == 2 and torch.allclose(outs[-1], enc(x), atol=1e-6)


def test_padded_slots_change_no_real_token():
    """An image's real tokens are the same alone and beside longer images in a batch."""
    enc = tiny_encoder().eval()
    pred = tiny_predictor().eval()
    x = torch.randn(2, 1, 32, 32)
    short_ctx, short_tgt = torch.tensor([[0, 3, 7]]), torch.tensor([[[9, 10]]])
    long_ctx, long_tgt = torch.tensor([[1, 2, 4, 5, 6]]), torch.tensor([[[11, 12, 13]]])
    alone = enc(x[:1], short_ctx)
    alone_pred = pred(alone[:, 1:], short_ctx, short_tgt)
    ctx = torch.cat([torch.cat([short_ctx, torch.tensor([[-1, -1]])], 1), long_ctx])
    tgt = torch.cat([torch.cat([short_tgt, torch.tensor([[[-1]]])], 2), long_tgt])
    batched = enc(x, ctx)
    assert torch.allclose(batched[:1, :4], alone, atol=1e-5)
    batched_pred = pred(batched[:, 1:], ctx, tgt)
    assert torch.allclose(batched_pred[:1, :, :2], alone_pred, atol=1e-5)
    # the padding is really masked: without the mask the short image's tokens change
    unmasked = enc(x, ctx.clamp(min=0))
    assert not torch.allclose(unmasked[:1, :4], alone, atol=1e-3)
