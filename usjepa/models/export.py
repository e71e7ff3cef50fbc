"""Export an encoder to safetensors with a timm config, and load weights back with checks."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from usjepa.models.encoder import TIMM_ARCH, ViTEncoder
from usjepa.models.input_spec import InputSpec


class CheckpointError(RuntimeError):
    """A checkpoint that is missing or does not fit the model it is loaded into."""


def export_encoder(
    encoder: ViTEncoder, path: str | Path, input_spec: InputSpec | None = None
) -> Path:
    """Write ``encoder.vit``'s weights as safetensors plus ``<stem>.json`` for timm.

    The JSON holds ``architecture`` and ``kwargs``; rebuild with
    ``timm.create_model(architecture, pretrained=True,
    pretrained_cfg_overlay=dict(file=path), **kwargs)``. It also holds ``input_spec``,
    the input contract (``input_spec`` here, else the encoder's own), which every reader
    of the export (probe, zoo, SALT teacher) applies.

    Returns:
        The safetensors path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in encoder.vit.state_dict().items()}
    save_file(state, str(path), metadata={"format": "pt", "architecture": TIMM_ARCH})
    config: dict = {"architecture": TIMM_ARCH, "kwargs": encoder.timm_kwargs}
    spec = input_spec or encoder.input_spec
    if spec is not None:
        config["input_spec"] = spec.to_json()
    path.with_suffix(".json").write_text(json.dumps(config, indent=2))
    return path


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


def load_exported(path: str | Path) -> ViTEncoder:
    """Rebuild a :class:`ViTEncoder` from an :func:`export_encoder` output."""
    path = Path(path)
    cfg_path = path.with_suffix(".json")
    if not cfg_path.exists():
        raise CheckpointError(
            f"{cfg_path} not found: an exported encoder needs the JSON "
            "config written beside its .safetensors by export_encoder"
        )
    kw = json.loads(cfg_path.read_text())["kwargs"]
    keep = ("img_size", "patch_size", "in_chans", "embed_dim", "depth", "num_heads", "mlp_ratio")
    return ViTEncoder(**{k: kw[k] for k in keep}, init_seed=None, checkpoint=str(path))


def read_state_dict(path: Path) -> dict:
    """A ``.safetensors``/``.pt``/``.pth``/``.ckpt`` file's contents (tensors only)."""
    if not path.exists():
        raise CheckpointError(
            f"checkpoint {path} not found; check the path (for the demo "
            "teacher, run stage 1 first: `make pretrain`)"
        )
    if path.suffix == ".safetensors":
        return load_file(str(path))
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle errors come in many types
        raise CheckpointError(
            f"cannot read checkpoint {path} ({type(err).__name__}: {str(err)[:200]}); it must "
            "be a safetensors file or a torch state dict saved with tensors only"
        ) from None


def load_checked(module: nn.Module, state: dict, source: str) -> None:
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
