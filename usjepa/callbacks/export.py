"""Export the trained encoder at the end of fit, and optionally every few minutes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_only

from usjepa.atomic import write_text
from usjepa.callbacks.card import data_summary, write_model_card
from usjepa.methods.base import network_of
from usjepa.models.encoder import ViTEncoder
from usjepa.models.export import export_encoder
from usjepa.models.input_spec import InputSpec


class ExportEncoder(L.Callback):
    """Write ``pl_module.<attribute>`` to safetensors + timm JSON when training ends.

    The JSON also records the input contract (:class:`~usjepa.models.input_spec.InputSpec`:
    size, channels and the DataModule's statistics), the step count,
    the training wall time and a data summary, so evaluation can match the input and
    plots can use time; a Markdown model card (``<stem>.md``) is written beside it.

    Args:
        path: output ``.safetensors`` path (a JSON config is written beside it); by
            default ``<trainer.default_root_dir>/encoder.safetensors``, so a config that
            changes the run directory moves the export with it.
        attribute: the encoder's attribute on the LightningModule; by default the
            module's ``trained_network`` (JEPA's student, MAE's encoder).
        every_minutes: also write snapshots ``<stem>_t<minutes>.safetensors`` each time
            this much training wall time has passed (for quality-vs-time curves).

    Under ``trainer.fast_dev_run`` nothing is written: a trial run in a real run's
    folder must not replace the export of the run.
    """

    def __init__(
        self,
        path: str | None = None,
        attribute: str | None = None,
        every_minutes: float | None = None,
    ) -> None:
        self.given = Path(path) if path else None
        self.path = self.given or Path("encoder.safetensors")  # set from the run in setup()
        self.attribute, self.every_minutes = attribute, every_minutes
        self._start = 0.0
        self._next = float("inf")

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Default the export path to ``<default_root_dir>/encoder.safetensors``."""
        if self.given is None:
            self.path = Path(trainer.default_root_dir) / "encoder.safetensors"

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Start the clock that times snapshots."""
        self._start = time.perf_counter()
        self._next = (self.every_minutes or float("inf")) * 60.0

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: object,
        batch: object,
        batch_idx: int,
    ) -> None:
        """Write a timed snapshot when ``every_minutes`` have passed."""
        elapsed = time.perf_counter() - self._start
        if elapsed >= self._next and not getattr(trainer, "fast_dev_run", 0):
            minutes = self._next / 60.0
            self._export(
                trainer,
                pl_module,
                self.path.with_name(f"{self.path.stem}_t{minutes:05.1f}{self.path.suffix}"),
                elapsed,
            )
            self._next += (self.every_minutes or float("inf")) * 60.0

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Write the final export and its model card."""
        if getattr(trainer, "fast_dev_run", 0):  # set by Trainer, not declared
            print(f"fast_dev_run: no export written ({self.path} is left as it was)")
            return
        self._export(trainer, pl_module, self.path, time.perf_counter() - self._start)
        print(f"exported {self.attribute or 'the trained network'} to {self.path}")

    @rank_zero_only
    def _export(
        self, trainer: L.Trainer, pl_module: L.LightningModule, path: Path, seconds: float
    ) -> None:
        if self.attribute is None:
            encoder: object = network_of(pl_module)
        else:
            encoder = getattr(pl_module, self.attribute, None)
        if not isinstance(encoder, ViTEncoder):
            raise AttributeError(
                f"ExportEncoder: the network to export ({self.attribute or 'trained_network'}"
                f" of {type(pl_module).__name__}) is {type(encoder).__name__}, not a "
                "ViTEncoder; export writes timm ViTs only"
            )
        dm = getattr(trainer, "datamodule", None)
        spec = None
        if getattr(dm, "mean", None) is not None:
            spec = InputSpec(
                encoder.img_size,
                encoder.in_chans,
                (float(dm.mean),),  # type: ignore[union-attr]
                (float(dm.std),),  # type: ignore[union-attr]
                stats=getattr(dm, "stats_origin", "scan_region"),
            )
        export_encoder(encoder, path, spec)
        cfg_path = path.with_suffix(".json")
        cfg = json.loads(cfg_path.read_text())
        cfg["trained_steps"] = trainer.global_step
        cfg["train_seconds"] = round(seconds, 1)
        data = data_summary(dm)
        cfg["data"] = data
        write_text(cfg_path, json.dumps(cfg, indent=2, default=str))
        write_model_card(path, cfg, pl_module, data)
