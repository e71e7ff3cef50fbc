"""``usjepa data ...``: the data tools' command line, on jsonargparse like ``pretrain``
and ``probe`` (one CLI stack): errors raise and end in one line, and every tool also
reads its options from YAML (``--config tool.yaml``)."""

from __future__ import annotations

from pathlib import Path

from jsonargparse import ActionConfigFile, ArgumentParser, Namespace

from usjepa.data.ingest.ultrabench import ULTRABENCH_TASKS

USAGE_LINES = """\
  data synth [--out DIR] [--images N]               write the synthetic corpus and task
  data contact-sheet [--out PNG]                    save a grid of synthetic samples
  data validate MANIFEST [--num-classes N]          report every problem in a manifest
  data build RAW OUT --dataset NAME                 raw images/videos/volumes/DICOM to frames
  data make-task SRC OUT [--labels CSV]             a labeled image folder to a probe task
  data build-task TASK RAW OUT                      a benchmark task from its raw download
                                                    (aul_mass, butterfly, fatty_liver, gbcu,
                                                    mmotu, pocus via ultrabench; busbra, tn5000)
  data download NAME --to RAW                       fetch a catalogued set (checksums, resume)
  data catalog [--licence TEXT] [--organ ORGAN]     the catalogue's sources and licences
  data check-leakage MANIFEST TASK... --out FILE    drop frames that are benchmark test images
  data shard MANIFEST OUT                           litdata shards for streaming at scale
"""


class _Tools:
    """``add_parser`` over jsonargparse subcommands, each with ``--config``."""

    def __init__(self, parser: ArgumentParser) -> None:
        self.sub = parser.add_subcommands(dest="cmd", required=True)

    def add_parser(self, name: str, help: str) -> ArgumentParser:
        tool = ArgumentParser(prog=f"usjepa data {name}", exit_on_error=False)
        tool.add_argument("--config", action=ActionConfigFile, help="options from YAML")
        self.sub.add_subcommand(name, tool, help=help)
        return tool


def _pixel_aspect_option(tool: ArgumentParser) -> None:
    tool.add_argument(
        "--pixel-aspect",
        type=float,
        default=1.0,
        help="width / height of what one raw pixel shows, for sets stored stretched "
        "(4:3 scans saved square: 1.33); the scan region is detected at square pixels",
    )


def _privacy_options(tool: ArgumentParser) -> None:
    tool.add_argument(
        "--keep-names",
        action="store_true",
        help="record raw paths and patient ids as they are (default: keyed pseudonyms)",
    )
    tool.add_argument(
        "--secret",
        default=None,
        help="pseudonym key file, kept outside the corpus (default: RAW/../.usjepa-secret)",
    )
    tool.add_argument(
        "--keep-outside",
        action="store_true",
        help="keep the pixels outside the scan region (default: written black)",
    )


def _parser() -> ArgumentParser:
    parser = ArgumentParser(prog="usjepa data", exit_on_error=False)
    sub = _Tools(parser)
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

    build = sub.add_parser("build", help="raw dataset folder to corpus frames + manifest")
    build.add_argument("raw", help="the dataset's raw download")
    build.add_argument("out", help="corpus folder (one for all datasets)")
    build.add_argument("--dataset", required=True, help="catalogue name (or any with --no-catalog)")
    build.add_argument("--catalog", default=None, help="catalogue YAML (default: ours)")
    build.add_argument("--no-catalog", action="store_true", help="build an uncatalogued dataset")
    build.add_argument("--organ", default=None)
    build.add_argument("--size", type=int, default=256, help="short side of written frames")
    build.add_argument("--format", default="jpg", choices=("jpg", "png"))
    build.add_argument("--video-fps", type=float, default=None)
    build.add_argument("--max-frames", type=int, default=None, help="cap per clip or volume")
    build.add_argument("--volume-axis", type=int, default=None)
    build.add_argument("--volume-stride", type=int, default=None)
    build.add_argument("--patient-pattern", default=None, help="regex; group 1 is the patient")
    build.add_argument("--exclude", default=None, help="regex of relative paths to skip")
    build.add_argument("--workers", type=int, default=1)
    _pixel_aspect_option(build)
    _privacy_options(build)

    task = sub.add_parser("make-task", help="labeled image folder to a probe task")
    task.add_argument("src")
    task.add_argument("out")
    task.add_argument("--labels", default=None, help="CSV: image,label[,patient,split,scan_mask]")
    task.add_argument("--test-fraction", type=float, default=0.2)
    task.add_argument("--seed", type=int, default=0)
    _pixel_aspect_option(task)
    _privacy_options(task)
    fetch = sub.add_parser("download", help="fetch a catalogued dataset or task")
    fetch.add_argument("name", help="catalogue name (dataset or task)")
    fetch.add_argument("--to", required=True, help="raw folder; files go to TO/NAME/")
    fetch.add_argument("--catalog", default=None, help="catalogue YAML (default: ours)")
    fetch.add_argument("--no-extract", action="store_true", help="keep archives packed")
    fetch.add_argument(
        "--zenodo-api", default="https://zenodo.org/api/records/", help="Zenodo API (a mirror)"
    )
    table = sub.add_parser("catalog", help="print the catalogue's sources and licences")
    table.add_argument("--licence", default=None, help="keep entries whose licence has this text")
    table.add_argument("--organ", default=None, help="keep entries of this organ")
    table.add_argument("--catalog", default=None, help="catalogue YAML (default: ours)")
    release = sub.add_parser(
        "build-task",
        help="a benchmark task from its raw download (UltraBench's six, BUS-BRA, TN5000)",
    )
    release.add_argument("name", choices=(*ULTRABENCH_TASKS, "busbra", "tn5000"))
    release.add_argument("raw")
    release.add_argument("out")
    release.add_argument("--fold-file", default=None, help="BUS-BRA k-fold CSV")
    release.add_argument(
        "--test-fold", type=int, default=None, help="BUS-BRA fold for test (default: lowest)"
    )
    release.add_argument("--test-fraction", type=float, default=0.2)
    release.add_argument("--seed", type=int, default=0)

    leak = sub.add_parser("check-leakage", help="find benchmark test images in a corpus")
    leak.add_argument("manifest")
    leak.add_argument("tasks", nargs="*", help="task folders and/or hash index files")
    leak.add_argument("--root", default=None)
    leak.add_argument("--max-distance", type=int, default=6, help="hash bits for a candidate")
    leak.add_argument("--min-correlation", type=float, default=0.98, help="thumbnail check")
    leak.add_argument("--out", default=None, help="write the manifest without matches here")
    leak.add_argument("--report", default=None, help="write the matches to this CSV")
    leak.add_argument("--save-index", default=None, help="save the tasks' hashes (parquet)")

    shard = sub.add_parser("shard", help="write litdata shards of a manifest")
    shard.add_argument("manifest")
    shard.add_argument("out")
    shard.add_argument("--root", default=None)
    shard.add_argument("--val-fraction", type=float, default=0.05)
    shard.add_argument("--chunk-bytes", default="64MB")
    shard.add_argument("--workers", type=int, default=1)
    return parser


def main(args: list[str]) -> None:
    """Parse ``usjepa data ...`` and run the tool."""
    parsed = _parser().parse_args(args)
    ns = parsed[parsed.cmd]
    ns.cmd = parsed.cmd
    handler = {
        "synth": synth,
        "contact-sheet": synth,
        "validate": validate,
        "build": build,
        "make-task": make_task,
        "build-task": build_task,
        "download": download,
        "catalog": catalog,
        "check-leakage": check_leakage,
        "shard": shard,
    }[ns.cmd]
    handler(ns)  # errors end in one line via usjepa.cli.main


def synth(ns: Namespace) -> None:
    """``data synth`` and ``data contact-sheet``."""
    from usjepa.data.synthetic import contact_sheet, generate_corpus, generate_task

    if ns.cmd == "synth":
        print(generate_corpus(Path(ns.out) / "corpus", ns.images, seed=ns.seed))
        print(generate_task(Path(ns.out) / "task", seed=ns.seed + 1))
    else:
        print(contact_sheet(ns.out))


def validate(ns: Namespace) -> None:
    """Print the report; exit 1 when anything is wrong."""
    import pandas as pd

    from usjepa.data.validate import format_report, validate_manifest

    problems = validate_manifest(ns.manifest, ns.root, ns.num_classes, not ns.no_files)
    print(format_report(problems, ns.manifest))
    if ns.report:
        pd.DataFrame([p.__dict__ for p in problems]).to_csv(ns.report, index=False)
    if problems:
        raise SystemExit(1)


def build(ns: Namespace) -> None:
    """``data build``: a raw download to corpus frames and manifest rows."""
    from dataclasses import replace

    from usjepa.data.ingest import FramePolicy, build_dataset
    from usjepa.data.ingest.catalog import DEFAULT_CATALOG, load_catalog

    organ, policy, pattern, exclude = ns.organ or "unknown", FramePolicy(), None, None
    if not ns.no_catalog:
        entry = load_catalog(ns.catalog or DEFAULT_CATALOG).entry(ns.dataset)
        organ, policy = ns.organ or entry.organ, entry.policy
        pattern, exclude = entry.patient_pattern, entry.exclude
    overrides = {
        "video_fps": ns.video_fps,
        "max_frames_per_clip": ns.max_frames,
        "volume_axis": ns.volume_axis,
        "volume_stride": ns.volume_stride,
    }
    policy = replace(policy, **{k: v for k, v in overrides.items() if v is not None})
    report = build_dataset(
        ns.raw,
        ns.out,
        ns.dataset,
        organ=organ,
        size=ns.size,
        image_format=ns.format,
        policy=policy,
        patient_pattern=ns.patient_pattern or pattern,
        exclude=ns.exclude or exclude,
        workers=ns.workers,
        pseudonymize=not ns.keep_names,
        secret=ns.secret,
        blank_outside=not ns.keep_outside,
        pixel_aspect=ns.pixel_aspect,
    )
    print(report)
    if report.failed:
        print(f"{report.failed} unreadable source(s) listed in {Path(ns.out) / 'build_errors.csv'}")


def make_task(ns: Namespace) -> None:
    """``data make-task``: a labelled image folder to a probe task."""
    from usjepa.data.ingest.task_builders import make_task as run

    out = run(
        ns.src,
        ns.out,
        ns.labels,
        ns.test_fraction,
        ns.seed,
        pseudonymize=not ns.keep_names,
        secret=ns.secret,
        blank_outside=not ns.keep_outside,
        pixel_aspect=ns.pixel_aspect,
    )
    print(task_summary(out))


def task_summary(root: Path) -> str:
    """One line on a written task: images per split, patients and classes."""
    import json

    splits = {s: json.loads((root / f"{s}.json").read_text()) for s in ("train_val", "test")}
    classes = json.loads((root / "classes.json").read_text())
    patients = {r["patient"] for records in splits.values() for r in records}
    return (
        f"{root}: {len(splits['train_val'])} train_val and {len(splits['test'])} test "
        f"images, {len(patients)} patients, {len(classes)} classes ({', '.join(classes)})"
    )


def download(ns: Namespace) -> None:
    """``data download``: a catalogued dataset or task into ``--to``."""
    from usjepa.data.ingest.catalog import DEFAULT_CATALOG, load_catalog
    from usjepa.data.ingest.download import download as run

    catalog = load_catalog(ns.catalog or DEFAULT_CATALOG)
    spec = catalog.fetch_spec(ns.name)
    run(ns.name, spec, ns.to, zenodo_api=ns.zenodo_api, extract=not ns.no_extract)


def catalog(ns: Namespace) -> None:
    """``data catalog``: the table of sources and licences, filtered."""
    from usjepa.data.ingest.catalog import DEFAULT_CATALOG, catalog_table, load_catalog

    print(catalog_table(load_catalog(ns.catalog or DEFAULT_CATALOG), ns.licence, ns.organ))


def build_task(ns: Namespace) -> None:
    """``data build-task``: a benchmark task from its raw download."""
    from usjepa.data.ingest.task_builders import build_busbra, build_tn5000
    from usjepa.data.ingest.ultrabench import build_ultrabench_task

    if ns.name in ULTRABENCH_TASKS:
        print(build_ultrabench_task(ns.name, ns.raw, ns.out))
    elif ns.name == "busbra":
        print(build_busbra(ns.raw, ns.out, ns.fold_file, ns.test_fold, ns.test_fraction, ns.seed))
    else:
        print(build_tn5000(ns.raw, ns.out, ns.test_fraction, ns.seed))


def check_leakage(ns: Namespace) -> None:
    """Report matches; with ``--out`` write the filtered manifest. Exit 1 on matches
    when no filtered manifest was asked for (so scripts notice)."""
    from usjepa.data.leakage import check_leakage as run
    from usjepa.data.leakage import load_index
    from usjepa.data.manifest import read_manifest

    index = load_index(ns.tasks)
    if ns.save_index:
        index.to_parquet(ns.save_index, index=False)
        print(f"saved {len(index)} test-image hashes to {ns.save_index}")
    table = read_manifest(ns.manifest)
    root = Path(ns.root) if ns.root else Path(ns.manifest).parent
    found = run(table, root, index, ns.max_distance, min_correlation=ns.min_correlation)
    exact = int((found["kind"] == "exact").sum()) if len(found) else 0
    rows = found["row"].nunique() if len(found) else 0
    print(
        f"{ns.manifest}: {rows} of {len(table)} frames match {len(index)} test images "
        f"({exact} exact, {len(found) - exact} near; hash <= {ns.max_distance} bits, "
        f"thumbnail r >= {ns.min_correlation})"
    )
    if ns.report:
        found.to_csv(ns.report, index=False)
    if ns.out:
        keep = ~table.index.isin(found["row"]) if len(found) else slice(None)
        table[keep].to_parquet(ns.out, index=False)
        where = f"its frame paths are relative to {root}"
        if Path(ns.out).resolve().parent != root.resolve():  # read from elsewhere: say so
            where += f"; train on it with --data.init_args.root {root}"
        print(f"wrote {ns.out}: {len(table[keep])} frames, without them; {where}")
    elif rows:
        raise SystemExit(1)


def shard(ns: Namespace) -> None:
    """``data shard``: litdata shards of a manifest."""
    from usjepa.data.shards import write_shards

    written = write_shards(
        ns.manifest, ns.out, ns.root, ns.val_fraction, ns.chunk_bytes, ns.workers
    )
    print(f"{ns.out}: " + ", ".join(f"{k} {v} frames" for k, v in written.items()))
