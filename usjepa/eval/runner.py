"""Linear-probe protocol: one set of poolings, head grid and seeds for every encoder."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from usjepa.data.tasks import ProbeDataModule, grouped_split
from usjepa.errors import ConfigError
from usjepa.eval.features import task_features
from usjepa.eval.protocol import ProbeProtocol
from usjepa.eval.report import summarise, write_few_shot, write_tables, write_tensorboard

#: an encoder, or what builds it: a probe config's encoders are built lazily (only those
#: named by ``models``), so probing one model never needs the others' checkpoints
EncoderSpec = Callable[[], nn.Module] | nn.Module


def build_encoders(encoders: dict[str, EncoderSpec]) -> dict[str, nn.Module]:
    """Build every lazily given encoder (all before any probing, so a missing checkpoint
    stops the run before work is done)."""
    return {n: e if isinstance(e, nn.Module) else e() for n, e in encoders.items()}


def resolve_models(encoders: dict[str, EncoderSpec], models: list[str]) -> dict[str, EncoderSpec]:
    """Pick and add encoders by short spec (what ``make probe MODELS=...`` passes).

    Each spec is a name from ``encoders``; a path to one of our exports
    (``*.safetensors``); or ``<zoo entry>:<checkpoint>`` (``usf_mae:/models/usf_mae.pth``),
    with ``/<timm architecture>`` for the entries that need one
    (``timm/vit_small_patch16_224:/w.safetensors``, ``echocare/<arch>:/echocare.pth``).
    """
    from usjepa.models.zoo import ZOO, ZooEncoder

    out: dict[str, EncoderSpec] = {}
    given: dict[str, str] = {}

    def add(name: str, spec: str, module: EncoderSpec) -> None:
        if name in out:
            raise ConfigError(
                f"models {given[name]!r} and {spec!r} would both be named {name!r} in the "
                "results; give the exports distinct file or folder names, or name them "
                "under the config's encoders"
            )
        given[name] = spec
        out[name] = module

    for spec in models:
        spec = spec.strip()
        if spec in encoders:
            add(spec, spec, encoders[spec])
        elif spec.endswith(".safetensors") and ":" not in spec:
            path = Path(spec)
            # runs/<name>/encoder.safetensors -> <name>; exports/student.safetensors -> student
            name = path.parent.name if path.stem == "encoder" and path.parent.name else path.stem
            add(name, spec, ZooEncoder("usjepa", spec))
        elif ":" in spec:
            entry, checkpoint = spec.split(":", 1)
            entry, _, arch = entry.partition("/")
            if entry not in ZOO:
                raise ConfigError(
                    f"model {spec!r}: unknown zoo entry {entry!r}; known: {sorted(ZOO)}"
                )
            name = arch if entry == "timm" else entry
            add(name, spec, ZooEncoder(entry, checkpoint, arch=arch or None))
        else:
            raise ValueError(
                f"model {spec!r} is not in the config's encoders ({sorted(encoders)}), an "
                "export (*.safetensors) or <zoo entry>:<checkpoint>"
            )
    return out


def run_probe(
    encoders: dict[str, EncoderSpec],
    task: ProbeDataModule | None = None,
    tasks: list[ProbeDataModule] | None = None,
    models: list[str] | None = None,
    task_roots: list[str] | None = None,
    fractions: list[float] | None = None,
    protocol: ProbeProtocol = ProbeProtocol(),  # noqa: B008 (frozen, so shared safely)
    skip_missing_tasks: bool = False,
    out_dir: str = "runs/probe",
    cache_dir: str | None = ".cache/features",
    device: str = "cpu",
    save_predictions: bool = False,
) -> pd.DataFrame:
    """Probe every encoder on a task under one protocol and write the result tables.

    For each encoder, features are extracted once per split (cached), then for each seed
    a validation split is carved from train_val by patient group, the head grid is
    trained on the rest, the best head by validation macro F1 is scored on test.

    Args:
        encoders: name -> frozen encoder returning ``[B, 1 + N, D]`` tokens, or a
            callable building it (what a YAML ``class_path`` entry becomes: only the
            encoders probed are built).
        task: the benchmark task.
        tasks: several tasks; results form one table, tasks as columns.
        models: probe these instead of all ``encoders`` (see :func:`resolve_models`).
        task_roots: task folders to probe instead of ``task``/``tasks``; each is read
            like ``task`` (same input size).
        fractions: few-shot label fractions (e.g. ``[0.01, 0.05, 0.1, 0.25, 0.5, 1.0]``):
            the training split is cut to that share of its patients, stratified by class
            (validation and test stay whole); writes ``fewshot.{csv,md,png}``.
        protocol: seeds, poolings, head grid and epochs (:class:`ProbeProtocol`); in
            YAML ``protocol: {seeds: [0, 1], epochs: 50}``, on the command line
            ``--protocol.seeds [0]``.
        skip_missing_tasks: probe the tasks whose folders exist and name the others,
            instead of stopping at the first missing one (a config listing all eight
            benchmark tasks, run where only some are built).
        out_dir: where ``probe_per_seed.csv``, ``probe_summary.csv`` and ``probe_table.md``
            go.
        cache_dir: feature cache (``None`` disables it).
        device: where feature extraction runs.
        save_predictions: also write ``probe_predictions.csv.gz``: for every model, task,
            label fraction and seed, the chosen head's class and the true class of each
            test image (by its position in the task's test split), for paired
            comparisons and bootstrap intervals over test images.

    Returns:
        The per-seed results.
    """
    all_tasks = list(tasks or []) + ([task] if task is not None else [])
    if task_roots:
        size = all_tasks[0].img_size if all_tasks else 224
        all_tasks = [ProbeDataModule(root, img_size=size) for root in task_roots]
    if not all_tasks:
        raise ValueError("no task to probe: give task, tasks or task_roots")
    if skip_missing_tasks:
        missing = [t for t in all_tasks if not t.exists()]
        all_tasks = [t for t in all_tasks if t.exists()]
        if missing:
            print(
                f"skipping {len(missing)} of {len(missing) + len(all_tasks)} tasks whose "
                "folders hold no split files: " + ", ".join(str(t.root) for t in missing)
            )
        if not all_tasks:
            raise ValueError("none of the tasks is built; build them with `usjepa data build-task`")
    if models:
        encoders = resolve_models(encoders, models)
    built = build_encoders(encoders)
    fractions = sorted(fractions or [1.0])
    rows: list[dict[str, Any]] = []
    predictions: list[pd.DataFrame] | None = [] if save_predictions else None
    for current in all_tasks:
        rows += _probe_task(built, current, protocol, cache_dir, device, fractions, predictions)
    per_seed = pd.DataFrame(rows)
    if predictions:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        pd.concat(predictions, ignore_index=True).to_csv(
            Path(out_dir) / "probe_predictions.csv.gz", index=False
        )
    full = per_seed[per_seed["fraction"] == 1.0]
    if len(full):
        summary = summarise(full)
        write_tables(full, summary, Path(out_dir))
        write_tensorboard(summary, Path(out_dir) / "tensorboard")
    if fractions != [1.0]:
        write_few_shot(per_seed, Path(out_dir))
    return per_seed


def few_shot_rows(
    groups: np.ndarray, labels: np.ndarray, pool: np.ndarray, fraction: float, seed: int
) -> np.ndarray:
    """Rows of ``pool`` kept for a label fraction: whole patients (groups), stratified by
    class, at least one patient per class present; ``fraction >= 1`` keeps all of them."""
    if fraction >= 1.0:
        return pool.copy()
    if fraction <= 0.0:
        raise ValueError(f"label fraction must be in (0, 1], got {fraction}")
    picked = np.zeros(len(pool), bool)
    idx = np.flatnonzero(pool)
    picked[idx] = grouped_split(groups[idx], labels[idx], fraction, seed + 7919)
    for c in np.unique(labels[idx]):  # a class whose patients all fell out keeps one
        if not (picked & (labels == c)).any():
            members = idx[labels[idx] == c]
            first = groups[members[0]]
            picked[members[groups[members] == first]] = True
    return picked


def _probe_task(
    encoders: dict[str, nn.Module],
    task: ProbeDataModule,
    protocol: ProbeProtocol,
    cache_dir: str | None,
    device: str,
    fractions: list[float],
    predictions: list[pd.DataFrame] | None = None,
) -> list[dict[str, Any]]:
    task.prepare_data()
    task.setup()
    rows = []
    for name, encoder in encoders.items():
        start = time.perf_counter()
        feats = {
            split: task_features(
                encoder,
                task,
                split,
                protocol.poolings,
                Path(cache_dir) if cache_dir else None,
                device,
                desc=f"{name}/{split}",
            )
            for split in ("train_val", "test")
        }
        y_tv = torch.tensor(task.labels("train_val"))
        y_test = torch.tensor(task.labels("test"))
        groups, labels = task.groups("train_val"), task.labels("train_val")
        for seed in protocol.seeds:
            is_val = task.val_mask(seed)
            va = {p: f[torch.from_numpy(is_val)] for p, f in feats["train_val"].items()}
            for fraction in fractions:
                keep = few_shot_rows(groups, labels, ~is_val, fraction, seed)
                tr = {p: f[torch.from_numpy(keep)] for p, f in feats["train_val"].items()}
                chosen: list[int] | None = [] if predictions is not None else None
                result = protocol.score(
                    tr,
                    y_tv[torch.from_numpy(keep)],
                    va,
                    y_tv[torch.from_numpy(is_val)],
                    feats["test"],
                    y_test,
                    task.num_classes,
                    seed,
                    chosen,
                )
                if predictions is not None and chosen is not None:
                    predictions.append(
                        pd.DataFrame(
                            {
                                "model": name,
                                "task": task.task_name,
                                "fraction": fraction,
                                "seed": seed,
                                "test_index": range(len(chosen)),
                                "label": y_test.tolist(),
                                "prediction": chosen,
                            }
                        )
                    )
                rows.append(
                    {
                        "model": name,
                        "task": task.task_name,
                        "fraction": fraction,
                        "train_images": int(keep.sum()),
                        **result,
                    }
                )
        print(f"probed {name} on {task.task_name} in {time.perf_counter() - start:.1f}s")
    return rows
