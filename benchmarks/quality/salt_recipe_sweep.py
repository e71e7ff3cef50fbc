"""Quick SALT recipe probes: train the student briefly with one change, probe it.

Each call trains the demo student (64 px, patch 8, width 192, depth 6) against a teacher
for ``steps`` steps with one recipe knob set, then fits scikit-learn logistic regression
(C in 0.01, 0.1, 1) on CLS and mean-pooled features of the synthetic lesion task and
prints test macro F1. ``steps=0`` measures the untrained (random-init) student under the
same probe. One seed per call: differences under ~0.05 are within noise.

    python -m benchmarks.quality.salt_recipe_sweep target_norm=layer_batch num_targets=2 steps=300
"""

from __future__ import annotations

import sys
import time
from functools import partial

import lightning as L
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score

from usjepa.data import CorpusDataModule, ProbeDataModule
from usjepa.eval.features import extract_features
from usjepa.masks import MultiBlockMaskGenerator
from usjepa.methods import SALTModule
from usjepa.models import JEPAPredictor, ViTEncoder

ARCH = dict(img_size=64, patch_size=8, embed_dim=192, depth=6, num_heads=3)


def main(argv: list[str]) -> None:
    args = dict(a.split("=", 1) for a in argv)
    steps = int(args.get("steps", 300))
    teacher_path = args.get("teacher", "runs/demo/teacher/encoder.safetensors")
    teacher = (
        ViTEncoder(**ARCH, init_seed=5)
        if teacher_path == "random"
        else ViTEncoder(**ARCH, checkpoint=teacher_path)
    )
    module = SALTModule(
        ViTEncoder(**ARCH, init_seed=2),
        JEPAPredictor(8, 192, 192, 96, 2, 4),
        teacher,
        target_norm=args.get("target_norm", "layer"),  # type: ignore[arg-type]
        optimizer=partial(torch.optim.AdamW, lr=float(args.get("lr", 1e-3)), betas=(0.9, 0.95)),
    )
    masks = MultiBlockMaskGenerator(8, num_targets=int(args.get("num_targets", 4)))
    data = CorpusDataModule(
        "data/synthetic/corpus/manifest.parquet",
        masks,
        img_size=64,
        batch_size=64,
        num_workers=1,
        synthesize_if_missing=True,
        synthetic_images=4000,
    )
    start = time.perf_counter()
    if steps > 0:
        L.Trainer(
            max_steps=steps,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            limit_val_batches=0,
            gradient_clip_val=1.0,
        ).fit(module, data)
    seconds = time.perf_counter() - start
    task = ProbeDataModule("data/synthetic/task", img_size=64, synthesize_if_missing=True)
    task.setup()
    feats = {
        s: extract_features(module.student, task.dataloader(s), ("cls", "mean"))
        for s in ("train_val", "test")
    }
    scores = {}
    for pooling in ("cls", "mean"):
        x, xt = feats["train_val"][pooling].numpy(), feats["test"][pooling].numpy()
        mu, sd = x.mean(0), x.std(0) + 1e-6
        scores[pooling] = [
            round(
                f1_score(
                    task.labels("test"),
                    LogisticRegression(max_iter=3000, C=c)
                    .fit((x - mu) / sd, task.labels("train_val"))
                    .predict((xt - mu) / sd),
                    average="macro",
                ),
                3,
            )
            for c in (0.01, 0.1, 1.0)
        ]
    print("RESULT", args, f"train {seconds:.0f}s", scores, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
