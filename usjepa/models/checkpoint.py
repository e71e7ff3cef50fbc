"""Reading checkpoints: state dicts from files, strict loading that explains mismatches,
and the input contract beside an export. A leaf module: it imports no model, so every
model (and the export module) can use it without an import cycle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from usjepa.errors import UsjepaError
from usjepa.models.input_spec import InputSpec


class CheckpointError(UsjepaError, RuntimeError):
    """A checkpoint that is missing or does not fit the model it is loaded into."""


def read_input_spec(path: Path) -> InputSpec | None:
    """The input contract in the JSON beside an export (older exports: their
    ``input_normalisation``), or ``None`` when there is none."""
    cfg_path = path.with_suffix(".json")
    if path.suffix != ".safetensors" or not cfg_path.exists():
        return None
    cfg = json.loads(cfg_path.read_text())
    if "input_spec" in cfg:
        return InputSpec.from_json(cfg["input_spec"])
    norm, kw = cfg.get("input_normalisation") or {}, cfg.get("kwargs") or {}
    if norm.get("mean") is None or "img_size" not in kw:
        return None
    chans = int(kw.get("in_chans", 1))
    return InputSpec(int(kw["img_size"]), chans, (float(norm["mean"]),), (float(norm["std"]),))


def read_state_dict(path: Path) -> dict[str, Any]:
    """A ``.safetensors``/``.pt``/``.pth``/``.ckpt`` file's contents (tensors only)."""
    if not path.exists():
        raise CheckpointError(
            f"checkpoint {path} not found; check the path (for the demo "
            "teacher, run stage 1 first: `make pretrain`)"
        )
    if path.suffix == ".safetensors":
        return load_file(str(path))
    try:
        result: dict[Any, Any] = torch.load(path, map_location="cpu", weights_only=True)
        return result
    except Exception as err:  # pickle errors come in many types
        raise CheckpointError(
            f"cannot read checkpoint {path} ({type(err).__name__}: {str(err)[:200]}); it must "
            "be a safetensors file or a torch state dict saved with tensors only"
        ) from None


def load_checked(module: nn.Module, state: dict[str, Any], source: str) -> None:
    """Load ``state`` strictly, or raise listing missing, unexpected and mis-shaped keys."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and own[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        raise CheckpointError(
            f"{source} does not match the model: missing keys {missing[:10]}"
            f"{' ...' if len(missing) > 10 else ''} ({len(missing)}), unexpected keys "
            f"{unexpected[:10]}{' ...' if len(unexpected) > 10 else ''} ({len(unexpected)}), "
            f"shape mismatches (file vs model) {shapes[:10]}. Build the model with the size "
            "arguments the checkpoint was trained with, or pick the matching zoo entry."
        )
    module.load_state_dict(state)


def load_state_dict_file(module: nn.Module, path: Path) -> None:
    """Load a ``.safetensors``/``.pt``/``.ckpt`` state dict strictly, explaining mismatches."""
    state = read_state_dict(path)
    state = state.get("state_dict", state)
    load_checked(module, state, f"checkpoint {path}")
