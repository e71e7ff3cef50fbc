"""Linear-probe protocol: one set of poolings, head grid and seeds for every encoder."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor, nn

from usjepa.data.tasks import ProbeDataModule
from usjepa.eval.features import cached_features
from usjepa.eval.linear_probe import LinearProbeModule
from usjepa.eval.metrics import classification_scores
from usjepa.eval.report import summarise, write_tables


def standardise(train: dict[str, Tensor], *others: dict[str, Tensor]) -> list[dict[str, Tensor]]:
    """Scale every pooling's features by the training split's mean and std."""
    stats = {p: (f.mean(0), f.std(0) + 1e-6) for p, f in train.items()}
    return [{p: (f - stats[p][0]) / stats[p][1] for p, f in d.items()} for d in (train, *others)]


def probe_seed(
    train: dict[str, Tensor],
    y_train: Tensor,
    val: dict[str, Tensor],
    y_val: Tensor,
    test: dict[str, Tensor],
    y_test: Tensor,
    num_classes: int,
    seed: int,
    lrs: tuple[float, ...],
    weight_decays: tuple[float, ...],
    epochs: int,
    batch_size: int,
) -> dict[str, float | str]:
    """Train the head grid for one seed, pick the best head on val, score it on test."""
    train, val, test = standardise(train, val, test)
    module = LinearProbeModule(
        {p: f.shape[1] for p, f in train.items()}, num_classes, lrs, weight_decays, init_seed=seed
    )
    module.fit(train, y_train, epochs, batch_size, seed)
    module.eval()
    val_f1 = module.head_f1(val, y_val)
    best = int(val_f1.argmax())
    logits = module.logits(test)[best]
    pooling, lr, wd = module.specs[best]
    return {
        "seed": seed,
        **classification_scores(logits, y_test, num_classes),
        "val_macro_f1": float(val_f1[best]),
        "pooling": pooling,
        "lr": lr,
        "weight_decay": wd,
    }


def run_probe(
    encoders: dict[str, nn.Module],
    task: ProbeDataModule,
    seeds: list[int] = [0, 1, 2, 3, 4],  # noqa: B006 (jsonargparse needs a value)
    poolings: list[str] = ["cls", "mean"],  # noqa: B006
    lrs: list[float] = [1e-3, 3e-3, 1e-2, 3e-2, 1e-1],  # noqa: B006
    weight_decays: list[float] = [1e-4, 1e-2, 1e-1, 5e-1],  # noqa: B006
    epochs: int = 100,
    batch_size: int = 128,
    out_dir: str = "runs/probe",
    cache_dir: str | None = ".cache/features",
    device: str = "cpu",
) -> pd.DataFrame:
    """Probe every encoder on a task under one protocol and write the result tables.

    For each encoder, features are extracted once per split (cached), then for each seed
    a validation split is carved from train_val by patient group, the head grid is
    trained on the rest, the best head by validation macro F1 is scored on test.

    Args:
        encoders: name -> frozen encoder returning ``[B, 1 + N, D]`` tokens.
        task: the benchmark task.
        seeds: one probe per seed; the table shows mean +/- std over them.
        poolings: token poolings tried as part of the grid.
        lrs, weight_decays: head grid.
        epochs, batch_size: head training.
        out_dir: where ``probe_per_seed.csv``, ``probe_summary.csv`` and ``probe_table.md``
            go.
        cache_dir: feature cache (``None`` disables it).
        device: where feature extraction runs.

    Returns:
        The per-seed results.
    """
    task.prepare_data()
    task.setup()
    rows = []
    for name, encoder in encoders.items():
        start = time.perf_counter()
        feats = {}
        for split in ("train_val", "test"):
            key = (str(task.root.resolve()), split, task.img_size, task.mean, task.std)
            feats[split] = cached_features(
                encoder,
                task.dataloader(split),
                tuple(poolings),
                key,
                Path(cache_dir) if cache_dir else None,
                device,
                desc=f"{name}/{split}",
            )
        y_tv = torch.tensor(task.labels("train_val"))
        y_test = torch.tensor(task.labels("test"))
        for seed in seeds:
            is_val = torch.from_numpy(task.val_mask(seed))
            tr = {p: f[~is_val] for p, f in feats["train_val"].items()}
            va = {p: f[is_val] for p, f in feats["train_val"].items()}
            result = probe_seed(
                tr,
                y_tv[~is_val],
                va,
                y_tv[is_val],
                feats["test"],
                y_test,
                task.num_classes,
                seed,
                tuple(lrs),
                tuple(weight_decays),
                epochs,
                batch_size,
            )
            rows.append({"model": name, "task": task.task_name, **result})
        print(f"probed {name} on {task.task_name} in {time.perf_counter() - start:.1f}s")
    per_seed = pd.DataFrame(rows)
    write_tables(per_seed, summarise(per_seed), Path(out_dir))
    return per_seed
