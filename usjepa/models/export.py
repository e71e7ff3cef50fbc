"""Export an encoder to safetensors with a timm config (and its input contract), and
rebuild it from that export. Reading checkpoints is :mod:`usjepa.models.checkpoint`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from usjepa.atomic import atomic_path, write_text
from usjepa.models.checkpoint import CheckpointError
from usjepa.models.encoder import TIMM_ARCH, ViTEncoder
from usjepa.models.input_spec import InputSpec

__all__ = ["export_encoder", "load_exported"]


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
    with atomic_path(path) as tmp:  # never a half-written export under the real name
        save_file(state, str(tmp), metadata={"format": "pt", "architecture": TIMM_ARCH})
    config: dict[str, Any] = {"architecture": TIMM_ARCH, "kwargs": encoder.timm_kwargs}
    spec = input_spec or encoder.input_spec
    if spec is not None:
        config["input_spec"] = spec.to_json()
    write_text(path.with_suffix(".json"), json.dumps(config, indent=2))
    return path


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
