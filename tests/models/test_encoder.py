import json

import pytest
import timm
import torch

from tests.conftest import tiny_encoder, tiny_predictor
from usjepa.models import CheckpointError, ViTEncoder, export_encoder, load_exported
from usjepa.models.posembed import sincos_2d
from usjepa.models.predictor import union_indices


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


def test_one_pass_predictor_sees_the_context_once_and_keeps_each_block():
    torch.manual_seed(0)
    per_block = tiny_predictor().eval()
    one_pass = tiny_predictor().eval()
    one_pass.load_state_dict(per_block.state_dict())
    one_pass.one_pass = True
    ctx, ctx_idx = torch.randn(2, 5, 32), torch.tensor([[0, 1, 2, 3, 4], [5, 6, 7, -1, -1]])
    single = torch.tensor([[[8, 9, 10]], [[12, 13, -1]]])  # one block: the same sequence
    same = per_block(ctx, ctx_idx, single)
    real = single >= 0
    assert torch.allclose(one_pass(ctx, ctx_idx, single)[real], same[real], atol=1e-6)
    blocks = torch.tensor([[[8, 9, -1], [12, 13, 14]], [[10, 11, 15], [1, -1, -1]]])
    out = one_pass(ctx, ctx_idx, blocks)
    assert out.shape == (2, 2, 3, 32)
    # padded slots, of the context or between blocks, change no real prediction
    trimmed = one_pass(ctx[1:, :3], ctx_idx[1:, :3], blocks[1:])
    assert torch.allclose(out[1], trimmed[0], atol=1e-5)
    wider = torch.cat([blocks, torch.full((2, 2, 2), -1)], dim=2)
    padded = one_pass(ctx, ctx_idx, wider)
    assert torch.allclose(out[0, 0, :2], padded[0, 0, :2], atol=1e-5)
    assert torch.allclose(out[0, 1], padded[0, 1, :3], atol=1e-5)
    # the blocks now see each other: a second block changes the first's prediction
    alone = one_pass(ctx[:1], ctx_idx[:1], blocks[:1, :1])
    assert not torch.allclose(out[0, 0, :2], alone[0, 0, :2], atol=1e-4)
    # a position two blocks share is one query: both slots get its one prediction, and
    # repeating a block adds no query (the sequence, and so every prediction, is the same)
    shared = torch.tensor([[[8, 9, 10], [10, 11, -1]]])
    both = one_pass(ctx[:1], ctx_idx[:1], shared)
    assert torch.equal(both[0, 0, 2], both[0, 1, 0])
    twice = one_pass(ctx[:1], ctx_idx[:1], torch.cat([shared, shared[:, :1]], 1))
    assert torch.allclose(twice[:, :2], both, atol=1e-6)


def test_union_indices_map_every_slot_to_its_position():
    targets = torch.tensor([[[5, 3, -1], [3, 7, 9]], [[2, -1, -1], [2, -1, -1]]])
    union, slot = union_indices(targets, 16)
    assert union.tolist() == [[3, 5, 7, 9], [2, -1, -1, -1]]
    real = targets >= 0
    assert torch.equal(union.gather(1, slot.flatten(1)).view_as(targets)[real], targets[real])


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


@pytest.mark.parametrize("groups", [1, 4])
def test_padded_slots_change_no_real_token(groups):
    """An image's real tokens are the same alone and beside longer images in a batch,
    run as one padded batch (the key mask) or in length groups."""
    enc = tiny_encoder().eval()
    pred = tiny_predictor().eval()
    enc.length_groups = pred.length_groups = groups
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


def test_an_export_is_probed_on_the_very_input_it_was_trained_on(corpus_dir, tmp_path):
    """One input contract: the normalised input an exported encoder sees in probing
    equals, bit for bit, what it saw in training for the same image."""
    import shutil

    from usjepa.data import CorpusDataModule
    from usjepa.data.images import normalize
    from usjepa.data.tasks import ProbeDataModule
    from usjepa.eval.features import task_features
    from usjepa.masks import MultiBlockMaskGenerator
    from usjepa.models.input_spec import InputSpec
    from usjepa.models.zoo import ZooEncoder

    dm = CorpusDataModule(
        str(corpus_dir / "manifest.parquet"), MultiBlockMaskGenerator(4), img_size=32
    )
    dm.setup()
    assert dm.stats_origin == "scan_region" and dm.mean is not None
    frame = corpus_dir / dm.train_set.table.frame_path[int(dm.train_set.rows[0])]
    # training: the frame transform without the random crop, then the batch normalisation
    seen = normalize(dm.val_transform(*dm.train_set.load(0))["image"][None], dm.mean, dm.std)
    spec = InputSpec(32, 1, (dm.mean,), (dm.std,))
    path = export_encoder(tiny_encoder(seed=4), tmp_path / "enc.safetensors", spec)
    # a task whose images include that frame, with statistics of its own
    task = tmp_path / "task"
    (task / "images").mkdir(parents=True)
    shutil.copy(frame, task / "images/a.png")
    records = [{"image": "images/a.png", "label": 0}, {"image": "images/a.png", "label": 1}]
    for split in ("train_val.json", "test.json"):
        (task / split).write_text(json.dumps(records))
    probe = ProbeDataModule(str(task), img_size=64, mean=0.5, std=0.25)
    probe.setup()
    for encoder in (
        ViTEncoder(32, 8, 1, 32, 2, 2, checkpoint=str(path)),
        ZooEncoder("usjepa", str(path)),
    ):
        assert encoder.input_spec == spec
        captured: list[torch.Tensor] = []
        target = encoder.vit if isinstance(encoder, ViTEncoder) else encoder.model
        hook = target.patch_embed.register_forward_pre_hook(
            lambda m, a, seen=captured: seen.append(a[0])
        )
        task_features(encoder, probe, "test", ("mean",), None)
        hook.remove()
        assert torch.equal(captured[0][:1], seen), type(encoder).__name__
