"""Export the trained encoder at the end of fit."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_only

from usjepa.models.encoder import ViTEncoder
from usjepa.models.export import export_encoder


class ExportEncoder(L.Callback):
    """Write ``pl_module.<attribute>`` to safetensors + timm JSON when training ends.

    Also records the input normalisation the DataModule used, so evaluation can match it.

    Args:
        path: output ``.safetensors`` path (a JSON config is written beside it).
        attribute: the encoder's attribute name on the LightningModule (``student`` for
            JEPA methods, ``encoder`` for MAE).
    """

    def __init__(self, path: str, attribute: str = "student") -> None:
        self.path, self.attribute = Path(path), attribute

    @rank_zero_only
    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        encoder = getattr(pl_module, self.attribute, None)
        if not isinstance(encoder, ViTEncoder):
            raise AttributeError(f"ExportEncoder: {type(pl_module).__name__} has no ViTEncoder "
                                 f"attribute {self.attribute!r}; set callback attribute to "
                                 "'student' (JEPA) or 'encoder' (MAE)")
        export_encoder(encoder, self.path)
        dm = trainer.datamodule
        cfg_path = self.path.with_suffix(".json")
        cfg = json.loads(cfg_path.read_text())
        cfg["input_normalisation"] = {"mean": getattr(dm, "mean", None),
                                      "std": getattr(dm, "std", None)}
        cfg["trained_steps"] = trainer.global_step
        cfg_path.write_text(json.dumps(cfg, indent=2))
        print(f"exported {self.attribute} to {self.path}")
