"""Command line: ``usjepa pretrain|probe|data``.

``pretrain`` is a LightningCLI ``fit`` over any LightningModule and DataModule given by
``class_path`` in YAML (the import path is the registry); ``probe`` runs the linear-probe
protocol from a YAML of encoders and a task; ``data synth`` writes the synthetic demo data.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import lightning as L
from lightning.pytorch.cli import LightningCLI

from usjepa.data.commands import USAGE_LINES as DATA_USAGE
from usjepa.errors import debug_requested, describe

USAGE = (
    """usage: usjepa {pretrain,probe,robustness,data} ...

  pretrain --config CONFIG.yaml [--key value ...]   train (LightningCLI fit)
  probe --config CONFIG.yaml [--key value ...]      linear-probe encoders on tasks
  robustness --config CONFIG.yaml [--key value ...] probes under corruptions, 5 severities
  --debug (or USJEPA_DEBUG=1)                       show the traceback of an error
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
        # parse errors raise (and main() prints one line) instead of a page of usage
        parser_kwargs={"exit_on_error": False, "fit": {"exit_on_error": False}},
    )


def probe(args: list[str]) -> None:
    """Parse a probe YAML into :func:`usjepa.eval.run_probe` and run it."""
    from jsonargparse import CLI

    from usjepa.eval.runner import run_probe

    with tempfile.TemporaryDirectory() as tmp:
        CLI(run_probe, args=_only_named_encoders(args, Path(tmp)), as_positional=False)


def _only_named_encoders(args: list[str], tmp: Path) -> list[str]:
    """With ``--models``, keep only the config's encoders that are named there, so that
    probing one model never needs the others' checkpoints to exist."""
    if "--models" not in args or "--config" not in args:
        return args
    import yaml

    models = yaml.safe_load(args[args.index("--models") + 1]) or []
    at = args.index("--config") + 1
    config = yaml.safe_load(Path(args[at]).read_text()) or {}
    encoders = config.get("encoders") or {}
    config["encoders"] = {k: v for k, v in encoders.items() if k in models}
    trimmed = tmp / "probe_config.yaml"
    trimmed.write_text(yaml.safe_dump(config))
    return [*args[:at], str(trimmed), *args[at + 1 :]]


def robustness(args: list[str]) -> None:
    """Parse a probe YAML into :func:`usjepa.eval.robustness.run_robustness` and run it."""
    from jsonargparse import CLI

    from usjepa.eval.robustness import run_robustness

    CLI(run_robustness, args=args, as_positional=False)


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
