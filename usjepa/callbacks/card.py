"""Markdown model cards written beside exported encoders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from usjepa.atomic import write_text

_METHOD_FIELDS = (
    "loss_kind",
    "target_norm",
    "teacher_layers",
    "ema_momentum",
    "norm_pix_loss",
    "weight_decay",
)
_SCHEDULE_FIELDS = ("warmup_fraction", "min_lr_ratio", "final_weight_decay")


def _schedule_rows(module: Any) -> list[str]:
    """Table rows for the optimiser and the LR schedule the module trained with."""
    trainer = getattr(module, "_trainer", None)
    if trainer is None or not trainer.lr_scheduler_configs:
        return []
    optimizer = trainer.optimizers[0]
    peak = optimizer.param_groups[0].get("initial_lr", optimizer.param_groups[0]["lr"])
    schedule = trainer.lr_scheduler_configs[0].scheduler
    rows = [f"| optimizer | {type(optimizer).__name__}, peak lr {peak:g} |"]
    rows.append(f"| schedule | {type(schedule).__name__} |")
    for name in _SCHEDULE_FIELDS:
        if getattr(schedule, name, None) is not None:
            rows.append(f"| {name} | {getattr(schedule, name)} |")
    return rows


def data_summary(datamodule: Any) -> dict[str, Any]:
    """What a corpus DataModule trained on: manifest, shards, frame counts per dataset,
    masking and normalisation (empty when there is no such DataModule)."""
    if datamodule is None:
        return {}
    summary: dict[str, Any] = {}
    for key in ("manifest_path", "shards", "img_size", "crop_scale", "sampling", "mean", "std"):
        value = getattr(datamodule, key, None)
        if value is not None:
            summary[key] = str(value) if isinstance(value, Path) else value
    collate = getattr(datamodule, "collate", None)
    if collate is not None:
        summary["usrc_masking"] = bool(collate.scan_region)
        summary["mask_generator"] = type(collate.generator).__name__
    table, train = getattr(datamodule, "table", None), getattr(datamodule, "train_set", None)
    if table is not None and train is not None:
        codes = table.dataset.codes[train.rows]
        names = table.dataset.value_list() or ["(unnamed)"]
        counts = np.bincount(np.where(codes < 0, 0, codes), minlength=len(names))
        summary["train_frames"] = int(len(train.rows))
        summary["frames_per_dataset"] = {n: int(c) for n, c in zip(names, counts) if c}
    return summary


def write_model_card(
    path: str | Path, config: dict[str, Any], module: Any = None, data: dict[str, Any] | None = None
) -> Path:
    """Write ``<stem>.md`` beside an export: architecture, how to load it in timm, the
    training method's settings and a data summary."""
    path = Path(path)
    weights = path.with_suffix(".safetensors").name
    lines = [
        f"# {path.stem}",
        "",
        "An ultrasound ViT encoder exported by usjepa.",
        "",
        "## Load it",
        "",
        "```python",
        "import json, timm",
        f'cfg = json.load(open("{path.with_suffix(".json").name}"))',
        'model = timm.create_model(cfg["architecture"], pretrained=True, **cfg["kwargs"],',
        f'                          pretrained_cfg_overlay=dict(file="{weights}"))',
        "```",
        "",
        "Inputs: grayscale images scaled to [0, 1], then `(x - mean) / std` with the input "
        "normalisation below.",
        "",
        "## Architecture",
        "",
        f"`{config.get('architecture')}` with",
        "",
        "```json",
        json.dumps(config.get("kwargs", {}), indent=1),
        "```",
        "",
        "## Training",
        "",
        "| setting | value |",
        "|---|---|",
    ]
    if module is not None:
        lines.append(f"| method | `{type(module).__module__}.{type(module).__name__}` |")
        for name in _METHOD_FIELDS:
            if getattr(module, name, None) is not None:
                lines.append(f"| {name} | {getattr(module, name)} |")
        lines += _schedule_rows(module)
        teacher = getattr(module, "teacher", None)
        if teacher is not None:
            lines.append(f"| teacher | {type(teacher).__name__}, width {teacher.embed_dim} |")
    for key in ("trained_steps", "train_seconds", "input_spec"):
        if key in config:
            lines.append(f"| {key} | {config[key]} |")
    if data:
        lines += ["", "## Data", "", "| item | value |", "|---|---|"]
        per_dataset = data.get("frames_per_dataset", {})
        for key, value in data.items():
            if key != "frames_per_dataset":
                lines.append(f"| {key} | {value} |")
        if per_dataset:
            lines += ["", "| dataset | training frames |", "|---|---|"]
            lines += [f"| {name} | {count:,} |" for name, count in per_dataset.items()]
    card = path.with_suffix(".md")
    write_text(card, "\n".join(lines) + "\n")
    return card
