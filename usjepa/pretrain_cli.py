"""``usjepa pretrain``'s LightningCLI: configs that state each fact once."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from usjepa.errors import ConfigError


def _grid(img_size: int, patch_size: int) -> int:
    return img_size // patch_size


def _patch_pixels(patch_size: int, in_chans: int) -> int:
    return patch_size * patch_size * in_chans


def _encoder_of(model: L.LightningModule) -> Any:
    """The trained network, which must tell its input size and patch grid."""
    from usjepa.methods.base import PretrainModule

    if not isinstance(model, PretrainModule):
        raise ConfigError(
            f"{type(model).__name__} is not a usjepa PretrainModule; subclass one of "
            "usjepa.methods to pretrain with `usjepa pretrain`"
        )
    net = model.trained_network
    if not (hasattr(net, "img_size") and hasattr(net, "grid_size")):
        raise ConfigError(
            f"cannot derive data.init_args.img_size and the mask grid from "
            f"{type(net).__name__}: give it img_size and grid_size attributes "
            "(grid_size = img_size // patch_size)"
        )
    return net


class PretrainCLI(LightningCLI):
    """LightningCLI whose configs state each fact once: what follows from the network
    that is trained is derived from it (``link_arguments``), so the YAML never repeats it.

    - JEPA methods: the predictor's ``in_dim`` and ``grid_size`` come from the student's
      ``embed_dim`` and ``img_size // patch_size``.
    - MAE: the decoder's ``in_dim``, ``grid_size`` and ``patch_pixels`` from the encoder.
    - Data: ``img_size`` and the mask generator's ``grid_size`` from the built student
      (or encoder), whatever its class.
    - Exports: :class:`~usjepa.callbacks.ExportEncoder` writes to the run directory
      (``trainer.default_root_dir``) unless given a path.

    A linked value written in the YAML anyway is replaced by the derived one.
    """

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Declare the links (parse-time within the model, instantiation-time to data),
        and the callback that gives the module the data's input statistics
        (:class:`~usjepa.callbacks.InputStatsFromData`)."""
        from usjepa.callbacks import InputStatsFromData

        parser.add_lightning_class_args(InputStatsFromData, "input_stats")
        for net, head in (("student", "predictor"), ("encoder", "decoder")):
            src, dst = f"model.init_args.{net}.init_args", f"model.init_args.{head}.init_args"
            parser.link_arguments(f"{src}.embed_dim", f"{dst}.in_dim")
            parser.link_arguments(
                (f"{src}.img_size", f"{src}.patch_size"), f"{dst}.grid_size", compute_fn=_grid
            )
        src = "model.init_args.encoder.init_args"
        parser.link_arguments(
            (f"{src}.patch_size", f"{src}.in_chans"),
            "model.init_args.decoder.init_args.patch_pixels",
            compute_fn=_patch_pixels,
        )
        parser.link_arguments(
            "model",
            "data.init_args.img_size",
            compute_fn=lambda model: _encoder_of(model).img_size,
            apply_on="instantiate",
        )
        parser.link_arguments(
            "model",
            "data.init_args.mask_generator.init_args.grid_size",
            compute_fn=lambda model: _encoder_of(model).grid_size,
            apply_on="instantiate",
        )

    def after_instantiate_classes(self) -> None:
        """Write the configs of the module's networks (``class_path`` entries, linked
        values included, which jsonargparse leaves out of its dump) into its saved
        hyperparameters, so ``load_from_checkpoint`` rebuilds the module from its
        checkpoint alone. (The module itself saves only its plain settings.)"""
        config = self.config[self.subcommand] if self.subcommand else self.config
        init_args = config.model.get("init_args") if config.model.get("class_path") else None
        saved = getattr(self.model, "hparams", None)
        if init_args is None or saved is None:
            return
        for name, value in vars(init_args).items():
            if hasattr(value, "class_path") and hasattr(value, "as_dict"):
                saved[name] = value.as_dict()
