"""The six UltraBench tasks from their raw downloads, through the ``ultrabench`` package.

UltraBench (Tupper and Gagné, TMLR 2025; ``ultrabench`` on PyPI, MIT) publishes the
preprocessing that turns each raw dataset into its benchmark task: frame sampling,
scan masks, and the official train / validation / test splits. We call it rather than
rewrite it, so a task built here is the benchmark's own. Its output folder
(``<task>_v<version>/`` with ``images/``, ``masks/scan/``, ``train.json``,
``validation.json`` and ``test.json``) is moved to ``out`` as it is, and
``classes.json`` is added (from the records' class-name field, else our catalogue);
:class:`usjepa.data.ProbeDataModule` reads that layout and keeps the official validation
split.

The raw layout each dataset needs is UltraBench's (its documentation names the
downloads); POCUS, for instance, is the ``covid19_ultrasound`` repository's
``data/pocus_images`` and ``data/pocus_videos``. Fatty liver is one MATLAB file (Zenodo
1009146, ``dataset_liver_bmodes_steatosis_assessment_IJCARS.mat``): pass the file, or the
folder it was downloaded to.
"""

from __future__ import annotations

import importlib
import json
import shutil
import tempfile
from pathlib import Path

from usjepa.data.ingest.catalog import load_catalog
from usjepa.data.ingest.task_builders import TaskBuildError
from usjepa.data.tasks import class_names_from_records, read_split

#: tasks whose raw download is one file, not a folder: task -> the file's suffix
FILE_TASKS = {"fatty_liver": ".mat"}

#: our task name -> the ultrabench command that builds it
ULTRABENCH_TASKS = {
    "aul_mass": "aul",
    "butterfly": "butterfly",
    "fatty_liver": "fatty_liver",
    "gbcu": "gbcu",
    "mmotu": "mmotu",
    "pocus": "pocus",
}


def _read_errors() -> tuple[type[BaseException], ...]:
    """What UltraBench's builders raise on a raw folder or file of the wrong layout."""
    errors: tuple[type[BaseException], ...] = (
        AssertionError,
        OSError,
        KeyError,
        ValueError,
        IndexError,
        TypeError,
    )
    try:
        from scipy.io.matlab import MatReadError
    except ImportError:  # pragma: no cover - scipy comes with ultrabench
        return errors
    return (*errors, MatReadError)


def resolve_raw(task: str, raw: Path) -> Path:
    """The path UltraBench's builder for ``task`` takes: a folder, or for a one-file
    download (:data:`FILE_TASKS`) that file, found inside ``raw`` when ``raw`` is the
    folder it was saved to."""
    suffix = FILE_TASKS.get(task)
    if suffix is None:
        if not raw.is_dir():
            raise TaskBuildError(f"{raw} is not a folder; give the raw {task} download")
        return raw
    if raw.is_file():
        if raw.suffix.lower() != suffix:
            raise TaskBuildError(f"{raw}: the raw {task} download is a {suffix} file")
        return raw
    if not raw.is_dir():
        raise TaskBuildError(f"{raw} does not exist; give the raw {task} {suffix} file")
    found = sorted(p for p in raw.rglob(f"*{suffix}") if p.is_file())
    if len(found) != 1:
        raise TaskBuildError(
            f"{raw}: expected one {suffix} file for {task}, found "
            f"{[p.name for p in found] or 'none'}; pass the file itself"
        )
    return found[0]


def build_ultrabench_task(task: str, raw: str | Path, out: str | Path) -> Path:
    """Build ``task`` from its raw download at ``raw`` into the task folder ``out``.

    Raises:
        TaskBuildError: unknown task, ``out`` already holds a task, ``ultrabench`` is
            missing, or the raw folder does not have the layout UltraBench expects.
    """
    if task not in ULTRABENCH_TASKS:
        raise TaskBuildError(
            f"unknown UltraBench task {task!r}; choose from {list(ULTRABENCH_TASKS)}"
        )
    raw, out = resolve_raw(task, Path(raw)), Path(out)
    if (out / "test.json").exists():
        raise TaskBuildError(f"{out} already holds a task; remove it or choose another folder")
    command = ULTRABENCH_TASKS[task]
    try:
        module = importlib.import_module(f"ultrabench.datasets.{command}")
    except ImportError as err:
        raise TaskBuildError(
            f"the ultrabench package is missing ({err}); run make install"
        ) from err
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        try:
            getattr(module, command)(str(raw), tmp)
        except _read_errors() as err:
            raise TaskBuildError(
                f"ultrabench could not build {task} from {raw} ({type(err).__name__}: {err}); "
                "check that the folder is the raw download in the layout UltraBench documents"
            ) from err
        built = sorted(p for p in Path(tmp).iterdir() if p.is_dir())
        picked = [p for p in built if p.name.startswith(task)] or built
        if len(picked) != 1:
            raise TaskBuildError(
                f"ultrabench wrote {[p.name for p in built]}; expected one {task} folder"
            )
        out.mkdir(parents=True, exist_ok=True)
        for item in picked[0].iterdir():
            shutil.move(str(item), out / item.name)
    records = read_split(out, "train_val")
    classes = class_names_from_records(records) or load_catalog().tasks.get(task, {}).get("classes")
    if isinstance(classes, list):
        (out / "classes.json").write_text(json.dumps(classes))
    return out
