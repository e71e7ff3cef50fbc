"""Command line: ``usjepa pretrain|probe|data``.

``pretrain`` is a LightningCLI ``fit`` over any LightningModule and DataModule given by
``class_path`` in YAML (the import path is the registry); ``probe`` runs the linear-probe
protocol from a YAML of encoders and a task; ``data synth`` writes the synthetic demo data.
"""

from __future__ import annotations

import argparse
import sys

import lightning as L
from lightning.pytorch.cli import LightningCLI

USAGE = """usage: usjepa {pretrain,probe,data} ...

  pretrain --config CONFIG.yaml [--key value ...]   train (LightningCLI fit)
  probe --config CONFIG.yaml [--key value ...]      linear-probe encoders on a task
  data synth [--out DIR] [--images N]               write the synthetic corpus and task
  data contact-sheet [--out PNG]                    save a grid of synthetic samples
  data validate MANIFEST [--num-classes N]          report every problem in a manifest
"""


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
    """Data tools."""
    parser = argparse.ArgumentParser(prog="usjepa data")
    sub = parser.add_subparsers(dest="cmd", required=True)
    synth = sub.add_parser("synth", help="write the synthetic corpus and lesion task")
    synth.add_argument("--out", default="data/synthetic")
    synth.add_argument("--images", type=int, default=2000)
    synth.add_argument("--seed", type=int, default=0)
    sheet = sub.add_parser("contact-sheet", help="save a PNG grid of synthetic samples")
    sheet.add_argument("--out", default="docs/synthetic_contact_sheet.png")
    check = sub.add_parser("validate", help="report every problem in a manifest")
    check.add_argument("manifest")
    check.add_argument("--root", default=None, help="folder relative paths start from")
    check.add_argument("--num-classes", type=int, default=None)
    check.add_argument("--no-files", action="store_true", help="skip file existence checks")
    check.add_argument("--report", default=None, help="write all problems to this CSV")
    ns = parser.parse_args(args)
    from pathlib import Path

    if ns.cmd == "validate":
        validate(ns)
        return
    from usjepa.data.synthetic import contact_sheet, generate_corpus, generate_task

    if ns.cmd == "synth":
        print(generate_corpus(Path(ns.out) / "corpus", ns.images, seed=ns.seed))
        print(generate_task(Path(ns.out) / "task", seed=ns.seed + 1))
    else:
        print(contact_sheet(ns.out))


def validate(ns: argparse.Namespace) -> None:
    """``usjepa data validate``: print the report; exit 1 when anything is wrong."""
    import pandas as pd

    from usjepa.data.manifest import ManifestError
    from usjepa.data.validate import format_report, validate_manifest

    try:
        problems = validate_manifest(ns.manifest, ns.root, ns.num_classes, not ns.no_files)
    except ManifestError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    print(format_report(problems, ns.manifest))
    if ns.report:
        pd.DataFrame([p.__dict__ for p in problems]).to_csv(ns.report, index=False)
    if problems:
        raise SystemExit(1)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"pretrain": pretrain, "probe": probe, "data": data}
    if not argv or argv[0] not in commands:
        print(USAGE, file=sys.stderr)
        raise SystemExit(2)
    commands[argv[0]](argv[1:])


if __name__ == "__main__":
    main()
