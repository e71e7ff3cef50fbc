"""Command line: ``usjepa pretrain|probe|data``.

``pretrain`` is a LightningCLI ``fit`` over any LightningModule and DataModule given by
``class_path`` in YAML (the import path is the registry); ``probe`` runs the linear-probe
protocol from a YAML of encoders and a task; ``data synth`` writes the synthetic demo data.
"""

from __future__ import annotations

import sys
from typing import Any

from usjepa.errors import ConfigError, debug_requested, describe

_COMMANDS = """usage: usjepa {pretrain,probe,robustness,data} ...

  pretrain --config CONFIG.yaml [--key value ...]   train (LightningCLI fit)
  probe --config CONFIG.yaml [--key value ...]      linear-probe encoders on tasks
  robustness --config CONFIG.yaml [--key value ...] probes under corruptions, 5 severities
  --debug (or USJEPA_DEBUG=1)                       show the traceback of an error
"""


def usage() -> str:
    """The command's usage text (the data tools' lines from :mod:`usjepa.data.commands`,
    imported only when it is shown: importing this module loads no library)."""
    from usjepa.data.commands import USAGE_LINES

    return _COMMANDS + USAGE_LINES


def __getattr__(name: str) -> Any:
    """``PretrainCLI``, imported from :mod:`usjepa.pretrain_cli` on first use."""
    if name == "PretrainCLI":
        from usjepa.pretrain_cli import PretrainCLI

        return PretrainCLI
    raise AttributeError(f"module 'usjepa.cli' has no attribute {name!r}")


def pretrain(args: list[str]) -> None:
    """LightningCLI ``fit``; the resolved config is saved as ``config.yaml`` in the log dir."""
    import lightning as L

    from usjepa.pretrain_cli import PretrainCLI

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
        print(usage(), file=sys.stderr)
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
