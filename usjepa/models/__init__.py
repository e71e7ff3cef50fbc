"""Pure torch models: encoder, predictor, decoder, export, and their contracts.

The names below are imported on first use (PEP 562), so ``import usjepa.models`` loads
neither timm nor torch until a model is asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from usjepa.models.checkpoint import CheckpointError
    from usjepa.models.contracts import ContextEncoder, Predictor, TokenEncoder
    from usjepa.models.decoder import MAEDecoder, patchify
    from usjepa.models.encoder import ViTEncoder
    from usjepa.models.export import export_encoder, load_exported
    from usjepa.models.predictor import JEPAPredictor
    from usjepa.models.tokens import PAD, gather_tokens

#: public name -> the module that defines it
_HOMES = {
    "CheckpointError": "checkpoint",
    "ContextEncoder": "contracts",
    "Predictor": "contracts",
    "TokenEncoder": "contracts",
    "MAEDecoder": "decoder",
    "patchify": "decoder",
    "ViTEncoder": "encoder",
    "export_encoder": "export",
    "load_exported": "export",
    "JEPAPredictor": "predictor",
    "PAD": "tokens",
    "gather_tokens": "tokens",
}

__all__ = [
    "PAD",
    "CheckpointError",
    "ContextEncoder",
    "JEPAPredictor",
    "MAEDecoder",
    "Predictor",
    "TokenEncoder",
    "ViTEncoder",
    "export_encoder",
    "gather_tokens",
    "load_exported",
    "patchify",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'usjepa.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"usjepa.models.{home}"), name)
    globals()[name] = value
    return value
