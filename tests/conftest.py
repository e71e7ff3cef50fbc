"""Shared fixtures: tiny models and a small synthetic corpus written once per session."""

from __future__ import annotations

import pytest
import torch

from usjepa.models import JEPAPredictor, ViTEncoder

torch.set_num_threads(2)


def tiny_encoder(seed: int = 0, **kw) -> ViTEncoder:
    args = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, init_seed=seed)
    args.update(kw)
    return ViTEncoder(**args)


def tiny_predictor(in_dim: int = 32, out_dim: int = 32, grid: int = 4) -> JEPAPredictor:
    return JEPAPredictor(grid, in_dim, out_dim, width=32, depth=1, num_heads=2)


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory):
    from usjepa.data.synthetic import generate_corpus

    root = tmp_path_factory.mktemp("corpus")
    generate_corpus(root, n_images=48, size=64, frames_per_patient=4, progress=False)
    return root


@pytest.fixture(scope="session")
def task_dir(tmp_path_factory):
    from usjepa.data.synthetic import generate_task

    root = tmp_path_factory.mktemp("task")
    generate_task(
        root,
        n_patients_train_val=24,
        n_patients_test=8,
        images_per_patient=6,
        size=64,
        progress=False,
    )
    return root
