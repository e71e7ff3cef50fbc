"""The dataset catalogue (``data_manifests/catalog.yaml``): corpus datasets and tasks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from usjepa.data.ingest.readers import SOURCE_KINDS, FramePolicy
from usjepa.errors import UsjepaError

#: shipped inside the package (``data_manifests/catalog.yaml`` links here), so that a
#: non-editable install finds it too
DEFAULT_CATALOG = Path(__file__).with_name("catalog.yaml")
_DATASET_KEYS = {"organ", "kinds", "source", "licence", "layout"}
_OPTIONAL_KEYS = {"patient_pattern", "frame_policy", "exclude", "aka"}


class CatalogError(UsjepaError, ValueError):
    """A catalogue file or entry that is malformed."""


@dataclass(frozen=True)
class CatalogEntry:
    """One corpus dataset: what it is, where it comes from and how to build it."""

    name: str
    organ: str
    kinds: tuple[str, ...]
    source: str | None
    licence: str | None
    layout: str
    policy: FramePolicy
    patient_pattern: str | None = None
    exclude: str | None = None
    aka: str | None = None


@dataclass
class Catalog:
    """The dataset catalogue: entries by name, read from ``catalog.yaml``."""

    datasets: dict[str, CatalogEntry]
    tasks: dict[str, dict[str, Any]]
    defaults: dict[str, Any] = field(default_factory=dict)

    def entry(self, name: str) -> CatalogEntry:
        """The entry called ``name``; a :class:`CatalogError` lists the known ones."""
        if name not in self.datasets:
            near = [n for n in self.datasets if n.lower() == name.lower()]
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise CatalogError(
                f"dataset {name!r} is not in the catalogue{hint} Known: "
                f"{', '.join(sorted(self.datasets))}. Pass --organ and frame options to build "
                "an uncatalogued dataset with --no-catalog."
            )
        return self.datasets[name]


def load_catalog(path: str | Path = DEFAULT_CATALOG) -> Catalog:
    """Read and check the catalogue: every dataset has the documented keys and a valid
    frame policy; every task has classes and a builder."""
    path = Path(path)
    if not path.exists():
        raise CatalogError(f"catalogue {path} not found; pass --catalog PATH")
    raw = yaml.safe_load(path.read_text()) or {}
    defaults = raw.get("defaults", {})
    base_policy = defaults.get("frame_policy", {})
    datasets = {}
    for name, spec in (raw.get("datasets") or {}).items():
        name = str(name)
        missing = _DATASET_KEYS - set(spec)
        unknown = set(spec) - _DATASET_KEYS - _OPTIONAL_KEYS
        if missing or unknown:
            raise CatalogError(
                f"{path}: dataset {name}: missing keys {sorted(missing)}, unknown keys "
                f"{sorted(unknown)}; allowed: {sorted(_DATASET_KEYS | _OPTIONAL_KEYS)}"
            )
        bad_kinds = set(spec["kinds"]) - set(SOURCE_KINDS)
        if bad_kinds:
            raise CatalogError(f"{path}: dataset {name}: unknown kinds {sorted(bad_kinds)}")
        try:
            policy = FramePolicy(**{**base_policy, **(spec.get("frame_policy") or {})})
        except (TypeError, ValueError) as err:
            raise CatalogError(f"{path}: dataset {name}: frame_policy: {err}") from None
        datasets[name] = CatalogEntry(
            name,
            spec["organ"],
            tuple(spec["kinds"]),
            spec["source"],
            spec["licence"],
            spec["layout"],
            policy,
            spec.get("patient_pattern"),
            spec.get("exclude"),
            spec.get("aka"),
        )
    tasks = {}
    for name, spec in (raw.get("tasks") or {}).items():
        if "classes" not in spec or "builder" not in spec:
            raise CatalogError(f"{path}: task {name}: needs 'classes' and 'builder'")
        tasks[str(name)] = dict(spec)
    return Catalog(datasets, tasks, defaults)
