"""Zoo loaders: checkpoints written in each original layout load and match to 1e-5."""

from __future__ import annotations

import pytest
import timm
import torch
from safetensors.torch import save_file

from tests.conftest import tiny_encoder, tiny_predictor
from usjepa.methods import SALTModule
from usjepa.models.export import CheckpointError, export_encoder
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


def test_ultrasam_image_encoder_layout(tmp_path):
    kw = {
        "img_size": 64,
        "embed_dim": 32,
        "depth": 2,
        "num_heads": 2,
        "window_size": 4,
        "global_attn_indexes": (1,),
        "neck_chans": 16,
    }
    ref = _reference("samvit_base_patch16", **kw)
    state = {f"image_encoder.{k}": v for k, v in ref.state_dict().items()}
    state["mask_decoder.output_upscaling.0.weight"] = torch.zeros(4, 4)
    state["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"] = torch.zeros(2, 8)
    torch.save(state, tmp_path / "ultrasam.pth")
    enc = _check("ultrasam", ref, tmp_path / "ultrasam.pth", kw, _inputs(64))
    assert enc.embed_dim == 16 and enc.num_prefix_tokens == 0


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
