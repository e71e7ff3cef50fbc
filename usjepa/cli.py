"""Command line: ``usjepa pretrain|probe|data``.

``pretrain`` is a LightningCLI ``fit`` over any LightningModule and DataModule given by
``class_path`` in YAML (the import path is the registry); ``probe`` runs the linear-probe
protocol from a YAML of encoders and a task; ``data synth`` writes the synthetic demo data.
"""

from __future__ import annotations

import sys
from typing import Any

import lightning as L
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from usjepa.data.commands import USAGE_LINES as DATA_USAGE
from usjepa.errors import ConfigError, debug_requested, describe

USAGE = (
    """usage: usjepa {pretrain,probe,robustness,data} ...

  pretrain --config CONFIG.yaml [--key value ...]   train (LightningCLI fit)
  probe --config CONFIG.yaml [--key value ...]      linear-probe encoders on tasks
  robustness --config CONFIG.yaml [--key value ...] probes under corruptions, 5 severities
  --debug (or USJEPA_DEBUG=1)                       show the traceback of an error
"""
    + DATA_USAGE
)


def _grid(img_size: int, patch_size: int) -> int:
    return img_size // patch_size


def _patch_pixels(patch_size: int, in_chans: int) -> int:
    return patch_size * patch_size * in_chans


def _encoder_of(model: L.LightningModule) -> Any:
    """The trained network, which must tell its input size and patch grid."""
    from usjepa.methods.base import trained_network

    _, net = trained_network(model)
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
        """Declare the links (parse-time within the model, instantiation-time to data)."""
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
        """Write the linked values into the module's saved hyperparameters (jsonargparse
        leaves link targets out of its dump), so ``load_from_checkpoint`` rebuilds the
        module from its checkpoint alone, without the links."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        saved = getattr(self.model, "hparams", {})
        for head in ("predictor", "decoder"):
            parsed = config.model.init_args.get(head) if config.model.get("init_args") else None
            spec = saved.get(head)
            if parsed is not None and isinstance(spec, dict) and "init_args" in spec:
                spec["init_args"] = {**spec["init_args"], **parsed.init_args.as_dict()}


def pretrain(args: list[str]) -> None:
    """LightningCLI ``fit``; the resolved config is saved as ``config.yaml`` in the log dir."""
    PretrainCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=["fit", *args],
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
        # parse errors raise (and main() prints one line) instead of a page of usage
        parser_kwargs={"exit_on_error": False, "fit": {"exit_on_error": False}},
    )


def probe(args: list[str]) -> None:
    """Parse a probe YAML into :func:`usjepa.eval.run_probe` and run it. Its encoders are
    built lazily, so ``--models`` naming some of them never builds the others."""
    from jsonargparse import CLI

    from usjepa.eval.runner import run_probe

    CLI(run_probe, args=_protocol_flags(args), as_positional=False, exit_on_error=False)


def _protocol_flags(args: list[str]) -> list[str]:
    """``args``, refusing a probe option that moved into ``--protocol.<name>``
    (:class:`~usjepa.eval.ProbeProtocol`) with a line that says where it lives now."""
    from dataclasses import fields

    from usjepa.eval.protocol import ProbeProtocol

    moved = {f"--{field.name}" for field in fields(ProbeProtocol)}
    for arg in args:
        flag = arg.split("=", 1)[0]
        if flag in moved:
            raise ConfigError(
                f"option {flag} moved to --protocol.{flag[2:]} (usjepa.eval.ProbeProtocol); "
                f"in YAML it goes under protocol:"
            )
    return args


def robustness(args: list[str]) -> None:
    """Parse a probe YAML into :func:`usjepa.eval.robustness.run_robustness` and run it."""
    from jsonargparse import CLI

    from usjepa.eval.robustness import run_robustness

    CLI(run_robustness, args=_protocol_flags(args), as_positional=False, exit_on_error=False)


def data(args: list[str]) -> None:
    """Data tools (see :mod:`usjepa.data.commands`)."""
    from usjepa.data.commands import main as data_main

    data_main(args)


def main(argv: list[str] | None = None) -> None:
    """Run one command. A user error ends in one line on stderr (what, where, the fix) and
    exit status 1; ``--debug`` or ``USJEPA_DEBUG=1`` shows the traceback instead."""
    debug, argv = debug_requested(list(sys.argv[1:] if argv is None else argv))
    commands = {"pretrain": pretrain, "probe": probe, "robustness": robustness, "data": data}
    if not argv or argv[0] not in commands:
        print(USAGE, file=sys.stderr)
        raise SystemExit(2)
    try:
        commands[argv[0]](argv[1:])
    except SystemExit as stop:
        if type(stop).__name__ != "SIGTERMException":
            raise
        print(
            f"usjepa {argv[0]}: stopped by SIGTERM; resume from the run's last.ckpt "
            "with --ckpt_path (CheckpointOnSigterm saves it)",
            file=sys.stderr,
        )
        raise SystemExit(143) from None
    except Exception as exc:
        if debug:
            raise
        print(f"usjepa {argv[0]}: error: {describe(exc)}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
