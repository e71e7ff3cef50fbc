"""The GPU benchmark's rows build and step, on the CPU and small, so that a session
lent a GPU spends its minutes measuring rather than debugging (``benchmarks/perf/gpu_step.py``)."""

from __future__ import annotations

import math

import pytest

from benchmarks.perf import gpu_step

TINY_VIT = {"img_size": 64, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}
TINY_PRED = {"width": 16, "depth": 1, "num_heads": 2}
#: torch.compile on the CPU takes minutes; that row's path is the others' plus compile
SKIPPED = {"SALT, compiled blocks"}


@pytest.mark.parametrize("row", [r for r in gpu_step.ROWS if r not in SKIPPED])
def test_every_gpu_row_steps_on_the_cpu(row: str) -> None:
    result = gpu_step.measure(
        gpu_step.ROWS[row], steps=1, batch=2, device="cpu", vit=TINY_VIT, pred=TINY_PRED
    )
    assert result["images_per_s"] > 0 and result["gflop_per_image"] > 0
    assert math.isnan(result["syncs_per_step"]) and math.isnan(result["peak_memory_gb"])


def test_rows_default_to_vit_b16_and_a_bf16_teacher() -> None:
    import torch

    module = gpu_step.build(gpu_step.ROWS["SALT, all fast paths"])
    params = sum(p.numel() for p in module.student.parameters())
    assert 85e6 < params < 87e6  # ViT-B/16
    assert module.teacher_dtype == torch.bfloat16
    fp32 = gpu_step.build(gpu_step.ROWS["SALT, fp32 teacher"])
    assert fp32.teacher_dtype is None
