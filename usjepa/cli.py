"""Command line: ``usjepa pretrain|probe|data``.

``pretrain`` is a LightningCLI ``fit`` over any LightningModule and DataModule given by
``class_path`` in YAML (the import path is the registry); ``probe`` runs the linear-probe
protocol from a YAML of encoders and a task; ``data synth`` writes the synthetic demo data.
"""

from __future__ import annotations

import sys

import lightning as L
from lightning.pytorch.cli import LightningCLI

from usjepa.data.commands import USAGE_LINES as DATA_USAGE

USAGE = (
    """usage: usjepa {pretrain,probe,data} ...

  pretrain --config CONFIG.yaml [--key value ...]   train (LightningCLI fit)
  probe --config CONFIG.yaml [--key value ...]      linear-probe encoders on a task
"""
    + DATA_USAGE
)


def pretrain(args: list[str]) -> None:
    """LightningCLI ``fit``; the resolved config is saved as ``config.yaml`` in the log dir."""
    LightningCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=["fit", *args],
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
    )


def probe(args: list[str]) -> None:
    """Parse a probe YAML into :func:`usjepa.eval.run_probe` and run it."""
    from jsonargparse import CLI

    from usjepa.eval.runner import run_probe

    CLI(run_probe, args=args, as_positional=False)


def data(args: list[str]) -> None:
    """Data tools (see :mod:`usjepa.data.commands`)."""
    from usjepa.data.commands import main as data_main

    data_main(args)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"pretrain": pretrain, "probe": probe, "data": data}
    if not argv or argv[0] not in commands:
        print(USAGE, file=sys.stderr)
        raise SystemExit(2)
    commands[argv[0]](argv[1:])


if __name__ == "__main__":
    main()
