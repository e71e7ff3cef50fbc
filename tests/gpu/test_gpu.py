"""What only a GPU can show: bf16 autocast over padded attention, fused AdamW with
gradient clipping under ``bf16-mixed``, NCCL DDP over two devices, and the recipe's
ViT-B/16 step. ``pytest -m gpu`` runs them; without CUDA they are skipped."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from torch.utils.data import DataLoader

from tests.conftest import ROOT, FixedBatches, run_cli, tiny_encoder, tiny_predictor, urfm_file
from usjepa.methods import SALTModule

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_bf16_autocast_keeps_padding_out_of_the_real_tokens():
    """Under bf16 autocast, timm blocks given the key mask give the real tokens what fp32
    gives (up to bf16 rounding), whatever sits in the padded slots."""
    from timm.models.vision_transformer import Block

    from usjepa.models.tokens import run_blocks

    torch.manual_seed(0)
    blocks = [Block(64, 4, qkv_bias=True).cuda() for _ in range(2)]
    x = torch.randn(3, 20, 64, device="cuda")
    valid = torch.ones(3, 20, dtype=torch.bool, device="cuda")
    valid[0, 12:] = False
    valid[1, 17:] = False
    noisy = torch.where(valid[..., None], x, 100 * torch.randn_like(x))
    with torch.no_grad():
        exact = run_blocks(blocks, x, valid)
        with torch.autocast("cuda", torch.bfloat16):
            fast = run_blocks(blocks, x, valid)
            fast_noisy = run_blocks(blocks, noisy, valid)
    cos = torch.nn.functional.cosine_similarity(fast[valid].float(), exact[valid], dim=-1)
    assert cos.min() > 0.99, cos.min()
    torch.testing.assert_close(fast_noisy[valid], fast[valid])


def test_fused_adamw_is_clipped_under_bf16_mixed(tmp_path):
    """Lightning alone refuses to clip a fused optimiser under mixed precision; under
    ``bf16-mixed`` the module clips it, and the gradients the update sees are clipped."""
    norms: list[float] = []

    class Recording(torch.optim.AdamW):
        def step(self, closure=None):  # type: ignore[no-untyped-def, override]
            loss = closure() if closure is not None else None  # Lightning's closure
            grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
            norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))
            super().step()
            return loss

    module = SALTModule(
        tiny_encoder(0), tiny_predictor(), tiny_encoder(1),
        optimizer=lambda params: Recording(params, lr=1e-3, fused=True),
    )  # fmt: skip
    trainer = L.Trainer(
        accelerator="gpu", devices=1, precision="bf16-mixed", max_steps=3,
        gradient_clip_val=1e-3, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(module, DataLoader(FixedBatches(3), batch_size=None))
    assert trainer.global_step == 3 and len(norms) == 3
    assert max(norms) <= 1e-3 * 1.01, norms


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_nccl_ddp_on_two_devices_keeps_the_replicas_equal(tmp_path):
    """Two NCCL ranks train and end with the same student weights."""
    config = {
        "trainer": {
            "accelerator": "gpu", "devices": 2, "strategy": "ddp", "precision": "bf16-mixed",
            "max_steps": 3, "enable_progress_bar": False, "default_root_dir": str(tmp_path / "run"),
        },
    }  # fmt: skip
    (tmp_path / "ddp.yaml").write_text(yaml.safe_dump(config))
    run_cli(
        ["pretrain", "--config", str(ROOT / "experiments/demo/teacher_mae.yaml"),
         "--config", str(tmp_path / "ddp.yaml"), "--data.init_args.synthetic_images", "32",
         "--data.init_args.num_workers", "0"],
        tmp_path,
    )  # fmt: skip
    assert (tmp_path / "run" / "encoder.safetensors").exists()


@pytest.mark.slow
def test_the_recipe_step_runs_in_bf16_on_one_gpu(tmp_path: Path):
    """``experiments/recipe/salt_vitb16.yaml`` as written (ViT-B/16, the SALT predictor,
    bf16-mixed, clipping), on one device, a few steps on synthetic frames; the URFM
    teacher's file is a random ViT-B/16 one block deep."""
    urfm_file(tmp_path)
    small = {
        "trainer": {
            "devices": 1, "num_nodes": 1, "strategy": "auto", "max_steps": 3,
            "val_check_interval": 2, "limit_val_batches": 1, "enable_progress_bar": False,
            "default_root_dir": str(tmp_path / "run"),
        },
        "model": {"init_args": {"teacher": {"init_args": {
            "checkpoint": str(tmp_path / "urfm.pth"), "arch_overrides": {"depth": 1}}}}},
        "data": {"init_args": {
            "manifest": str(tmp_path / "corpus/manifest.parquet"), "shards": None,
            "synthesize_if_missing": True, "synthetic_images": 48, "batch_size": 8,
            "num_workers": 2, "test_index": []}},
    }  # fmt: skip
    (tmp_path / "small.yaml").write_text(yaml.safe_dump(small))
    proc = run_cli(
        ["pretrain", "--config", str(ROOT / "experiments/recipe/salt_vitb16.yaml"),
         "--config", str(tmp_path / "small.yaml")],
        tmp_path,
    )  # fmt: skip
    assert (tmp_path / "run" / "encoder.safetensors").exists(), proc.stdout[-2000:]
