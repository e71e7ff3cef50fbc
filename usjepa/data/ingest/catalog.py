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
_OPTIONAL_KEYS = {
    "patient_pattern",
    "frame_policy",
    "exclude",
    "aka",
    "download",
    "access",
    "use",
    "note",
}


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
    download: dict[str, Any] | None = None  # how a script may fetch it (download.py)
    access: dict[str, Any] | None = None  # a gated set: where to register, what to expect
    use: str | None = None  # what the licence allows, where it limits use (training...)
    note: str | None = None  # why a source or licence is missing, or what differs

    def spec(self) -> dict[str, Any]:
        """The fields :func:`usjepa.data.ingest.download.download` reads."""
        out: dict[str, Any] = {"source": self.source}
        if self.download:
            out["download"] = self.download
        if self.access:
            out["access"] = self.access
        return out


@dataclass
class Catalog:
    """The dataset catalogue: entries by name, read from ``catalog.yaml``."""

    datasets: dict[str, CatalogEntry]
    tasks: dict[str, dict[str, Any]]
    defaults: dict[str, Any] = field(default_factory=dict)

    def fetch_spec(self, name: str) -> dict[str, Any]:
        """How dataset or task ``name`` is fetched (``download``/``access``/``source``)."""
        if name in self.tasks:
            return self.tasks[name]
        return self.entry(name).spec()

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
            spec.get("download"),
            spec.get("access"),
            spec.get("use"),
            spec.get("note"),
        )
    tasks = {}
    for name, spec in (raw.get("tasks") or {}).items():
        if "classes" not in spec or "builder" not in spec:
            raise CatalogError(f"{path}: task {name}: needs 'classes' and 'builder'")
        tasks[str(name)] = dict(spec)
    return Catalog(datasets, tasks, defaults)


def catalog_table(catalog: Catalog, licence: str | None = None, organ: str | None = None) -> str:
    """The catalogue as a Markdown table (datasets, then tasks): organ, source, licence,
    how it is had (script, gated, or by hand) and what the licence allows; filtered by a
    text in the licence (``none`` for entries without one) and by organ."""
    rows = []
    for entry in catalog.datasets.values():
        how = "script" if entry.download else "gated" if entry.access else "by hand"
        rows.append(("dataset", entry.name, entry.organ, entry.source, entry.licence, how,
                     entry.use or entry.note or ""))  # fmt: skip
    for name, spec in catalog.tasks.items():
        how = "script" if spec.get("download") else "gated" if spec.get("access") else "by hand"
        use = spec.get("use") or spec.get("note") or ""
        rows.append(("task", name, spec.get("organ", ""), spec.get("source"),
                     spec.get("licence"), how, use))  # fmt: skip
    if licence is not None:
        want = licence.lower()
        rows = [r for r in rows if (r[4] or "none").lower().find(want) >= 0]
    if organ is not None:
        rows = [r for r in rows if str(r[2]).lower() == organ.lower()]
    lines = [
        "| kind | name | organ | source | licence | how | use / note |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(str(c) if c else "-" for c in r) + " |" for r in rows]
    return "\n".join(lines) + f"\n\n{len(rows)} entries"
