"""Pure torch models: encoder, predictor, decoder, export."""

from usjepa.models.checkpoint import CheckpointError
from usjepa.models.decoder import MAEDecoder, patchify
from usjepa.models.encoder import ViTEncoder
from usjepa.models.export import export_encoder, load_exported
from usjepa.models.predictor import JEPAPredictor
from usjepa.models.tokens import PAD, gather_tokens

__all__ = [
    "PAD",
    "CheckpointError",
    "JEPAPredictor",
    "MAEDecoder",
    "ViTEncoder",
    "export_encoder",
    "gather_tokens",
    "load_exported",
    "patchify",
]
