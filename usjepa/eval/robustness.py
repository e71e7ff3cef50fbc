"""Robustness: heads trained on clean features, scored on corrupted test sets.

For each encoder and seed the head grid is trained on clean train features and its best
head (by clean validation macro F1) scores the test split under every corruption and
severity (inside the scan region only). Writes ``robustness.csv`` (per seed),
``robustness_summary.csv``, ``robustness.md`` (rows models, columns corruptions, cells
mean macro F1 over severities, beside clean), ``robustness.png`` (macro F1 against
severity per corruption) and ``corruptions.png`` (each corruption at each severity on
one test image).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from usjepa.atomic import write_text
from usjepa.data.corruptions import CORRUPTIONS, SEVERITIES, corruption_grid
from usjepa.data.images import read_gray
from usjepa.data.tasks import ProbeDataModule
from usjepa.eval.features import task_features
from usjepa.eval.metrics import classification_scores
from usjepa.eval.protocol import ProbeProtocol, standardise
from usjepa.eval.report import save_figure, write_csv
from usjepa.eval.runner import EncoderSpec, build_encoders


def run_robustness(
    encoders: dict[str, EncoderSpec],
    task: ProbeDataModule,
    corruptions: list[str] | None = None,
    severities: list[int] = list(SEVERITIES),  # noqa: B006, B008
    protocol: ProbeProtocol = ProbeProtocol(seeds=(0, 1, 2)),  # noqa: B008 (frozen)
    out_dir: str = "runs/robustness",
    cache_dir: str | None = ".cache/features",
    device: str = "cpu",
) -> pd.DataFrame:
    """Score clean-trained probes on corrupted test sets; see the module docstring.

    Args:
        corruptions: names from :data:`usjepa.data.corruptions.CORRUPTIONS` (all of them
            by default).
        severities: levels 1 to 5.
        encoders: name -> frozen encoder, as :func:`usjepa.eval.run_probe`.
        task: the task whose test images are corrupted.
        protocol: seeds, poolings, head grid and epochs, as for
            :func:`usjepa.eval.run_probe` (3 seeds by default: each is scored under
            every corruption and severity).
        out_dir: where the tables and plots go.
        cache_dir: feature cache (``None`` disables it).
        device: where features are extracted.
    """
    names = corruptions or list(CORRUPTIONS)
    unknown = set(names) - set(CORRUPTIONS)
    if unknown:
        raise ValueError(
            f"unknown corruptions {sorted(unknown)}; choose from {sorted(CORRUPTIONS)}"
        )
    task.prepare_data()
    task.setup()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(cache_dir) if cache_dir else None
    conditions = [("clean", 0)] + [(n, s) for n in names for s in severities]
    y_tv = torch.tensor(task.labels("train_val"))
    y_test = torch.tensor(task.labels("test"))
    rows = []
    for model, encoder in build_encoders(encoders).items():
        start = time.perf_counter()

        def features(
            split: str, condition: tuple[str, int], encoder: nn.Module = encoder, model: str = model
        ) -> dict[str, Any]:
            corruption = None if condition[0] == "clean" else condition
            desc = f"{model}/{split}/{condition[0]}{condition[1] or ''}"
            return task_features(
                encoder, task, split, protocol.poolings, cache, device, desc, corruption
            )

        train_val = features("train_val", ("clean", 0))
        tests = {c: features("test", c) for c in conditions}
        for seed in protocol.seeds:
            is_val = torch.from_numpy(task.val_mask(seed))
            tr = {p: f[~is_val] for p, f in train_val.items()}
            va = {p: f[is_val] for p, f in train_val.items()}
            module, best, _ = protocol.fit(
                tr, y_tv[~is_val], va, y_tv[is_val], task.num_classes, seed
            )
            for (name, severity), feats in tests.items():
                (test,) = standardise(tr, feats)[1:]
                with torch.no_grad():
                    logits = module.logits(test)[best]
                scores = classification_scores(logits, y_test, task.num_classes)
                rows.append(
                    {
                        "model": model,
                        "task": task.task_name,
                        "corruption": name,
                        "severity": severity,
                        "seed": seed,
                        "macro_f1": scores["macro_f1"],
                        "accuracy": scores["accuracy"],
                    }
                )
        print(f"robustness of {model} on {task.task_name} in {time.perf_counter() - start:.1f}s")
    per_seed = pd.DataFrame(rows)
    write_csv(per_seed, out / "robustness.csv")
    _report(per_seed, out)
    test = task.tables["test"].iloc[0]
    image = read_gray(task.root / test["image"], "task image")
    mask_rel = test.get("scan_mask", "")
    mask = read_gray(task.root / mask_rel, "scan mask") if mask_rel else image * 0 + 255
    corruption_grid(image, mask, str(out / "corruptions.png"))
    return per_seed


def _report(per_seed: pd.DataFrame, out: Path) -> None:
    grouped = per_seed.groupby(["model", "corruption", "severity"], sort=False)["macro_f1"]
    summary = grouped.agg(["mean", "std", "count"]).reset_index()
    summary[["mean", "std"]] *= 100.0
    write_csv(summary, out / "robustness_summary.csv")
    per_corruption = summary.groupby(["model", "corruption"], sort=False)["mean"].mean()
    table = per_corruption.unstack("corruption")
    order = ["clean", *[c for c in table.columns if c != "clean"]]
    table = table[order].round(1)
    n = int(summary["count"].max())
    write_text(
        out / "robustness.md",
        f"Macro F1 (%) of probes trained on clean features, on corrupted test sets (mean "
        f"over severities and {n} seeds; corruptions inside the scan region)\n\n"
        + table.to_markdown()
        + "\n",
    )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [c for c in order if c != "clean"]
    cols = min(4, len(names))
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        for model, part in summary[summary["corruption"] == name].groupby("model", sort=False):
            clean = summary[(summary["model"] == model) & (summary["corruption"] == "clean")]
            x = [0, *part["severity"]]
            y = [float(clean["mean"].iloc[0]), *part["mean"]]
            ax.plot(x, y, marker="o", label=model)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("severity (0 = clean)", fontsize=8)
        ax.set_ylabel("macro F1 (%)", fontsize=8)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out / "robustness.png", dpi=110)
