"""Pure torch models: encoder, predictor, decoder, export."""

from usjepa.models.decoder import MAEDecoder, patchify
from usjepa.models.encoder import ViTEncoder, gather_tokens
from usjepa.models.export import CheckpointError, export_encoder, load_exported
from usjepa.models.predictor import JEPAPredictor

__all__ = [
    "CheckpointError",
    "JEPAPredictor",
    "MAEDecoder",
    "ViTEncoder",
    "export_encoder",
    "gather_tokens",
    "load_exported",
    "patchify",
]
