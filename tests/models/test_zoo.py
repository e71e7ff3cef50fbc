"""Zoo loaders: checkpoints written in each original layout load and match to 1e-5."""

from __future__ import annotations

import pytest
import timm
import torch
from safetensors.torch import save_file

from tests.conftest import tiny_encoder, tiny_predictor
from usjepa.methods import SALTModule
from usjepa.models.checkpoint import CheckpointError
from usjepa.models.export import export_encoder
from usjepa.models.zoo import IMAGENET, ZooEncoder

TINY_VIT = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}


def _reference(arch: str, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model(arch, pretrained=False, num_classes=0, **kw).eval()


def _inputs(size: int = 32) -> torch.Tensor:
    return torch.rand(2, 1, size, size, generator=torch.Generator().manual_seed(1))


def _expected(ref: torch.nn.Module, x: torch.Tensor, norm=IMAGENET) -> torch.Tensor:
    mean = torch.tensor(norm[0]).view(1, 3, 1, 1)
    std = torch.tensor(norm[1]).view(1, 3, 1, 1)
    with torch.no_grad():
        return ref.forward_features((x.expand(-1, 3, -1, -1) - mean) / std)


def _check(name: str, ref, checkpoint, overrides, x) -> ZooEncoder:
    encoder = ZooEncoder(name, str(checkpoint), arch_overrides=overrides).eval()
    with torch.no_grad():
        got = encoder(x)
    want = _expected(ref, x)
    if want.ndim == 4:  # SAM neck map
        want = want.flatten(2).transpose(1, 2)
    assert got.shape == want.shape and torch.allclose(got, want, atol=1e-5)
    return encoder


def test_usf_mae_encoder_plus_decoder_layout(tmp_path):
    ref = _reference("vit_base_patch16_224", **TINY_VIT)
    state = dict(ref.state_dict())
    state.update(
        {
            "decoder_embed.weight": torch.zeros(16, 32),
            "mask_token": torch.zeros(1, 1, 16),
            "decoder_pred.weight": torch.zeros(192, 16),
        }
    )
    torch.save({"model": state, "epoch": 3}, tmp_path / "usf_mae.pth")
    enc = _check("usf_mae", ref, tmp_path / "usf_mae.pth", TINY_VIT, _inputs())
    assert enc.num_prefix_tokens == 1 and enc.embed_dim == 32 and enc.grid_size == 4


def test_usfm_beit_layout_under_a_wrapper_prefix(tmp_path):
    kw = {
        **TINY_VIT,
        "use_abs_pos_emb": False,
        "use_rel_pos_bias": True,
        "init_values": 0.1,
        "global_pool": "avg",
    }
    ref = _reference("beit_base_patch16_224", **kw)
    with torch.no_grad():  # layer scale and relative bias away from their init values
        for name, p in ref.named_parameters():
            if "gamma" in name or "relative_position_bias_table" in name:
                p.normal_()
    state = {f"model.{k}": v for k, v in ref.state_dict().items()}
    state.update({"lm_head.weight": torch.zeros(8, 32), "mask_token": torch.zeros(1, 1, 32)})
    torch.save(state, tmp_path / "USFM_latest.pth")
    enc = _check("usfm", ref, tmp_path / "USFM_latest.pth", kw, _inputs())
    assert enc.num_prefix_tokens == 1


def test_usfm_pretraining_file_with_one_shared_relative_position_table(tmp_path):
    kw = {
        **TINY_VIT,
        "use_abs_pos_emb": False,
        "use_rel_pos_bias": True,
        "init_values": 0.1,
        "global_pool": "avg",
    }
    ref = _reference("beit_base_patch16_224", **kw)
    shared = torch.randn_like(ref.blocks[0].attn.relative_position_bias_table)
    with torch.no_grad():  # USFM copies one pretrained table into every block
        for block in ref.blocks:
            block.attn.relative_position_bias_table.copy_(shared)
            block.gamma_1.normal_()
    state = {
        k: v for k, v in ref.state_dict().items() if not k.endswith("relative_position_bias_table")
    }
    state.pop("fc_norm.weight"), state.pop("fc_norm.bias")  # pretraining has `norm` instead
    state["rel_pos_bias.relative_position_bias_table"] = shared
    state["rel_pos_bias.relative_position_index"] = torch.zeros(17, 17, dtype=torch.long)
    state["norm.weight"], state["norm.bias"] = torch.full((32,), 3.0), torch.ones(32)
    state["lm_head.weight"], state["mask_token"] = torch.zeros(8, 32), torch.zeros(1, 1, 32)
    torch.save(state, tmp_path / "USFM_latest.pth")
    _check("usfm", ref, tmp_path / "USFM_latest.pth", kw, _inputs())


def test_samus_reads_the_published_key_layout():
    """Every key (and shape) of SAMUS ViT-B's ``image_encoder`` (recorded from the SAMUS
    code at 256 px) lands in our module, and nothing is missing."""
    import json
    from pathlib import Path

    from usjepa.models.checkpoint import load_checked
    from usjepa.models.samus import SAMUSEncoder, remap_samus

    layout = json.loads((Path(__file__).parent / "data/samus_vit_b_image_encoder.json").read_text())
    assert "blocks.2.Space_Adapter.q.weight" in layout and "cnn_embed.inc.conv.0.weight" in layout
    state = {f"image_encoder.{k}": torch.zeros(shape) for k, shape in layout.items()}
    state["mask_decoder.iou_token.weight"] = torch.zeros(1, 256)
    model = SAMUSEncoder(neck=True)
    load_checked(model, remap_samus(state, model), "SAMUS layout")  # strict, shapes too
    # the inverse renames used to write SAMUS files below give exactly the published keys
    assert {_samus_original_key(k) for k in model.state_dict()} == set(layout)
    bare = SAMUSEncoder(neck=False)
    assert len(remap_samus(state, bare)) == len(layout) - 6  # the neck's 6 tensors dropped
    load_checked(bare, remap_samus(state, bare), "SAMUS layout without the neck")


def _samus_original_key(key: str) -> str:
    """Our SAMUS key -> the SAMUS checkpoint's (inverse of the loader's renames)."""
    import re

    key = re.sub(r"^(cnn_embed\.inc|blocks\.\d+\.refine_adapter)\.(\d)", r"\1.conv.\2", key)
    key = re.sub(r"^((?:cnn_embed|post_pos_embed)\.downs\.\d+)\.(\d)", r"\1.maxpool_conv.\2", key)
    for old, new in (
        ("input_adapter.fc", "input_Adapter.D_fc"),
        ("mlp_adapter.fc", "MLP_Adapter.D_fc"),
        ("space_adapter.", "Space_Adapter."),
        ("refine_adapter.", "refine_Adapter."),
        (".mlp.fc", ".mlp.lin"),
    ):
        key = key.replace(old, new)
    return key


def test_samus_checkpoint_through_the_zoo(tmp_path):
    from usjepa.models.samus import SAMUSEncoder

    tiny = {"embed_dim": 32, "depth": 2, "num_heads": 2, "global_attn_indexes": (1,)}
    torch.manual_seed(0)
    ref = SAMUSEncoder(**tiny, neck=True).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(0.05 * torch.randn_like(p))
    state = {f"image_encoder.{_samus_original_key(k)}": v for k, v in ref.state_dict().items()}
    assert "image_encoder.blocks.1.MLP_Adapter.D_fc1.weight" in state
    state["prompt_encoder.point_embeddings.0.weight"] = torch.zeros(1, 256)
    torch.save(state, tmp_path / "samus.pth")
    enc = ZooEncoder("samus", str(tmp_path / "samus.pth"), arch_overrides=tiny).eval()
    assert enc.img_size == 256 and enc.grid_size == 32 and enc.embed_dim == 32
    x = torch.rand(1, 1, 128, 128, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():  # grey [0, 1] pixels at 256, the pre-neck fused map
        ref.neck = None
        want = ref(torch.nn.functional.interpolate(x, size=(256, 256), mode="bilinear"))
        assert torch.allclose(enc(x), want.flatten(2).transpose(1, 2), atol=1e-5)


def test_echocare_needs_the_architecture_named(tmp_path):
    ref = _reference("vit_base_patch16_224", **TINY_VIT)
    torch.save(
        {"model": {f"backbone.{k}": v for k, v in ref.state_dict().items()}}, tmp_path / "e.pth"
    )
    with pytest.raises(ValueError, match="needs arch="):
        ZooEncoder("echocare", str(tmp_path / "e.pth"))
    enc = ZooEncoder("echocare", str(tmp_path / "e.pth"), "vit_base_patch16_224", TINY_VIT).eval()
    with torch.no_grad():
        assert torch.allclose(enc(_inputs()), _expected(ref, _inputs()), atol=1e-5)


def test_urfm_takes_a_local_encoder_under_any_prefix(tmp_path):
    ref = _reference("vit_base_patch16_224", **TINY_VIT)
    state = {f"encoder.{k}": v for k, v in ref.state_dict().items()}
    state["decoder.proj.weight"] = torch.zeros(4, 4)
    torch.save({"state_dict": state}, tmp_path / "urfm.pth")
    _check("urfm", ref, tmp_path / "urfm.pth", TINY_VIT, _inputs())


def test_ijepa_target_encoder_layout_without_cls(tmp_path):
    kw = {**TINY_VIT, "class_token": False, "global_pool": "avg"}
    ref = _reference("vit_huge_patch14_224", **kw)
    wrapped = {f"module.{k}": v for k, v in ref.state_dict().items()}
    noise = {k: torch.randn_like(v) for k, v in wrapped.items()}
    torch.save(
        {"encoder": noise, "target_encoder": wrapped, "predictor": {}, "epoch": 1},
        tmp_path / "ijepa.pth.tar",
    )
    enc = _check("ijepa", ref, tmp_path / "ijepa.pth.tar", kw, _inputs())
    assert enc.num_prefix_tokens == 0


SAM_TINY = {
    "img_size": 64,
    "embed_dim": 32,
    "depth": 2,
    "num_heads": 2,
    "window_size": 4,
    "global_attn_indexes": (1,),
    "neck_chans": 16,
}


def _sam_reference() -> torch.nn.Module:
    ref = _reference("samvit_base_patch16", **SAM_TINY)
    with torch.no_grad():  # relative positions away from their zero init
        for name, p in ref.named_parameters():
            if "rel_pos" in name:
                p.normal_(0, 0.5)
    return ref


def _mmpretrain_key(key: str) -> str:
    """timm samvit key -> mmpretrain ViTSAM key (UltraSam's mmdetection file)."""
    for old, new in (
        ("patch_embed.proj.", "patch_embed.projection."),
        ("blocks.", "layers."),
        (".norm1.", ".ln1."),
        (".norm2.", ".ln2."),
        (".mlp.fc1.", ".ffn.layers.0.0."),
        (".mlp.fc2.", ".ffn.layers.1."),
        ("neck.", "channel_reduction."),
    ):
        key = key.replace(old, new)
    return key


def test_ultrasam_mmdetection_layout_reads_the_last_block_with_keep_ratio_padding(tmp_path):
    ref = _sam_reference()
    state = {f"backbone.{_mmpretrain_key(k)}": v for k, v in ref.state_dict().items()}
    assert "backbone.layers.0.ffn.layers.0.0.weight" in state
    state["decode_head.mask_tokens.weight"] = torch.zeros(4, 16)
    state["prompt_encoder.point_embeddings.0.weight"] = torch.zeros(1, 16)
    torch.save({"meta": {"epoch": 1}, "state_dict": state}, tmp_path / "UltraSam.pth")
    enc = ZooEncoder("ultrasam", str(tmp_path / "UltraSam.pth"), arch_overrides=SAM_TINY).eval()
    assert enc.embed_dim == 32 and enc.num_prefix_tokens == 0
    x = torch.rand(2, 1, 48, 32, generator=torch.Generator().manual_seed(1))  # portrait
    # UltraSam's pipeline: longer side to 64 (48x32 -> 64x43), black pad to 64x64, normalise
    big = torch.nn.functional.interpolate(x, size=(64, 43), mode="bilinear", align_corners=False)
    padded = torch.nn.functional.pad(big, (0, 21, 0, 0))
    ref.neck = torch.nn.Identity()
    with torch.no_grad():
        got = enc(x)
        want = _expected(ref, padded).flatten(2).transpose(1, 2)
    assert got.shape == (2, 16, 32) and torch.allclose(got, want, atol=1e-5)


def test_meta_sam_layout_with_the_neck(tmp_path):
    ref = _sam_reference()
    state = {
        f"image_encoder.{k.replace('mlp.fc', 'mlp.lin')}": v for k, v in ref.state_dict().items()
    }
    assert "image_encoder.blocks.0.mlp.lin1.weight" in state
    state["mask_decoder.output_upscaling.0.weight"] = torch.zeros(4, 4)
    state["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"] = torch.zeros(2, 8)
    torch.save(state, tmp_path / "sam_vit_b.pth")
    path = str(tmp_path / "sam_vit_b.pth")
    enc = ZooEncoder("ultrasam", path, arch_overrides=SAM_TINY, neck=True).eval()
    assert enc.embed_dim == 16
    _check_tokens(enc, ref, _inputs(64))


def _check_tokens(enc, ref, x) -> None:
    with torch.no_grad():
        got, want = enc(x), _expected(ref, x).flatten(2).transpose(1, 2)
    assert got.shape == want.shape and torch.allclose(got, want, atol=1e-5)


def test_dinov3_and_any_timm_model_in_timm_layout(tmp_path):
    kw = {"img_size": 32, "embed_dim": 32, "depth": 2, "num_heads": 2}
    ref = _reference("vit_base_patch16_dinov3", **kw)
    save_file(ref.state_dict(), str(tmp_path / "dinov3.safetensors"))
    _check("dinov3_vitb16", ref, tmp_path / "dinov3.safetensors", kw, _inputs())
    ref = _reference("vit_small_patch16_224", **TINY_VIT)
    save_file(ref.state_dict(), str(tmp_path / "small.safetensors"))
    enc = ZooEncoder(
        "timm",
        str(tmp_path / "small.safetensors"),
        arch="vit_small_patch16_224",
        arch_overrides=TINY_VIT,
    ).eval()
    norm = (ref.pretrained_cfg["mean"], ref.pretrained_cfg["std"])  # the model's own
    with torch.no_grad():
        assert torch.allclose(enc(_inputs()), _expected(ref, _inputs(), norm), atol=1e-5)


def test_our_export_through_the_zoo(tmp_path):
    encoder = tiny_encoder(4).eval()
    path = export_encoder(encoder, tmp_path / "ours.safetensors")
    zoo = ZooEncoder("usjepa", str(path)).eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(zoo(x), encoder(x), atol=1e-5)


def test_mismatched_checkpoint_lists_missing_and_unexpected_keys(tmp_path):
    ref = _reference("vit_base_patch16_224", **{**TINY_VIT, "depth": 3})
    torch.save({"model": ref.state_dict()}, tmp_path / "deeper.pth")
    with pytest.raises(CheckpointError, match=r"unexpected keys \['blocks\.2\."):
        ZooEncoder("usf_mae", str(tmp_path / "deeper.pth"), arch_overrides=TINY_VIT)
    with pytest.raises(ValueError, match="unknown zoo entry"):
        ZooEncoder("usfm_typo")


def test_zoo_entry_as_salt_teacher_with_another_width_and_grid():
    teacher = ZooEncoder(
        "usf_mae",
        arch_overrides={**TINY_VIT, "img_size": 48, "embed_dim": 48, "patch_size": 4},
        input_mean=0.3,
        input_std=0.2,
    )
    module = SALTModule(tiny_encoder(1), tiny_predictor(out_dim=48), teacher)
    g = torch.Generator().manual_seed(0)
    from usjepa.masks import MultiBlockMaskGenerator

    ctx, tgt = MultiBlockMaskGenerator(4)(2, g)
    loss, _ = module.step_loss({"image": torch.randn(2, 1, 32, 32), "context": ctx, "targets": tgt})
    assert torch.isfinite(loss)


CONTRACT = {  # every zoo entry, at a tiny size: (arch, overrides)
    "usf_mae": (None, TINY_VIT),
    "usfm": (None, TINY_VIT),
    "urfm": (None, TINY_VIT),
    "ijepa": (None, TINY_VIT),
    "dinov3_vitb16": (None, {"img_size": 32, "embed_dim": 32, "depth": 2, "num_heads": 2}),
    "ultrasam": (None, SAM_TINY),
    "samus": (None, {"img_size": 128, "embed_dim": 32, "depth": 2, "num_heads": 2}),
    "echocare": ("vit_base_patch16_224", TINY_VIT),
    "timm": ("vit_small_patch16_224", TINY_VIT),
}


def test_every_zoo_entry_has_a_contract():
    from usjepa.models.zoo import ZOO

    assert set(CONTRACT) == set(ZOO)


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_zoo_entry_contract_tokens_and_salt_teacher(name):
    """Tokens ``[B, prefix + N, D]`` with the declared sizes, from our normalised grey
    images of any size, and usable as a frozen SALT teacher by name."""
    from usjepa.masks import MultiBlockMaskGenerator

    arch, overrides = CONTRACT[name]
    teacher = ZooEncoder(name, arch=arch, arch_overrides=overrides, input_mean=0.3, input_std=0.2)
    with torch.no_grad():
        tokens = teacher.eval()(torch.randn(2, 1, 40, 40))
    n = teacher.num_prefix_tokens + teacher.grid_size**2
    assert tokens.shape == (2, n, teacher.embed_dim) and torch.isfinite(tokens).all()
    module = SALTModule(tiny_encoder(1), tiny_predictor(out_dim=teacher.embed_dim), teacher)
    ctx, tgt = MultiBlockMaskGenerator(4)(2, torch.Generator().manual_seed(0))
    loss, _ = module.step_loss({"image": torch.randn(2, 1, 32, 32), "context": ctx, "targets": tgt})
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is None for p in teacher.parameters())


def test_zoo_vits_give_their_last_blocks_like_ours(tmp_path):
    """``forward_blocks`` (timm's forward_intermediates) on a zoo ViT: the last block equals
    the forward pass, so teacher_layers and *_last<n> poolings work for zoo encoders too."""
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, depth=2)
    path = tmp_path / "tiny.safetensors"
    save_file(vit.state_dict(), str(path))
    enc = ZooEncoder("timm", str(path), arch="vit_tiny_patch16_224", arch_overrides={"depth": 2})
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        blocks = enc.forward_blocks(x, 2)
        assert len(blocks) == 2 and blocks[-1].shape == enc(x).shape
        assert torch.allclose(blocks[-1], enc(x), atol=1e-5)
