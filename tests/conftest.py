"""Shared fixtures: tiny models and a small synthetic corpus written once per session."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import timm
import torch
from torch.utils.data import DataLoader

from usjepa.masks import MultiBlockMaskGenerator
from usjepa.models import JEPAPredictor, ViTEncoder

#: the repository's root
ROOT = Path(__file__).resolve().parents[1]

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


class FixedBatches(torch.utils.data.Dataset):
    def __init__(self, n: int = 4):
        """``n`` batches of four 32-px images, one context and one target set each."""
        g = torch.Generator().manual_seed(0)
        self.items = [
            {
                "image": torch.randn(4, 1, 32, 32, generator=g),
                "context": torch.arange(8).repeat(4, 1),
                "targets": torch.arange(8, 12).repeat(4, 1, 1),
            }
            for _ in range(n)
        ]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def real_scan_task(tmp: Path) -> Path:
    """A probe task made by `make-task` from the real lung scans of
    tests/fixtures/real_scans (label: the probe geometry, patient: the clip)."""
    import shutil

    import pandas as pd

    from usjepa.data.ingest.task_builders import make_task

    real = Path(__file__).resolve().parent / "fixtures" / "real_scans"
    labels = []
    for row in pd.read_csv(real / "index.csv").itertuples():
        shutil.copy(real / row.frame, tmp / Path(row.frame).name)
        labels.append({"image": Path(row.frame).name, "label": row.geometry, "patient": row.clip})
    pd.DataFrame(labels).to_csv(tmp / "labels.csv", index=False)
    return make_task(tmp, tmp / "task", tmp / "labels.csv", progress=False)


def fit_and_save(module, tmp_path, steps: int = 4, callbacks=()):
    """Fit ``module`` for ``steps`` on :class:`FixedBatches` and save a checkpoint."""
    trainer = quiet_trainer(tmp_path, max_steps=steps, callbacks=list(callbacks))
    trainer.fit(module, DataLoader(FixedBatches(steps), batch_size=None))
    path = tmp_path / "module.ckpt"
    trainer.save_checkpoint(path)
    return path


def grating_batch(gen_cls=MultiBlockMaskGenerator, n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    # smooth random gratings: structured enough that masked content is predictable
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 32), indexing="ij")
    f = torch.rand(n, 3, generator=g) * 6 + 1
    images = torch.sin(f[:, 0, None, None] * xx + f[:, 1, None, None] * yy + f[:, 2, None, None])[
        :, None
    ]
    ctx, tgt = gen_cls(4)(n, g)
    return {"image": images, "context": ctx, "targets": tgt}


class ListDataset(torch.utils.data.Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def quiet_trainer(root, **kw) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        **kw,
    )


def run_cli(args, cwd):
    proc = subprocess.run(
        [sys.executable, "-m", "usjepa", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def urfm_file(tmp: Path) -> None:
    """A URFM-layout file (timm ViT-B/16 under a wrapper prefix), random weights."""
    vit = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0, depth=1)
    state = {f"model.{k}": v for k, v in vit.state_dict().items()}
    torch.save({"state_dict": state}, tmp / "urfm.pth")
