"""The recipe configs against the published reference values (docs/reference_values.yaml):
every difference must be a row of docs/fidelity.md that says how to restore the reference."""

from __future__ import annotations

import importlib
import inspect
import math
import re
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT

RECIPE = ROOT / "experiments" / "recipe"
TABLE = yaml.safe_load((ROOT / "docs" / "reference_values.yaml").read_text())["values"]
FIDELITY = (ROOT / "docs" / "fidelity.md").read_text()


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for key, value in over.items():
            out[key] = _merge(base.get(key), value) if key in base else value
        return out
    return over


def _configs() -> dict[str, dict]:
    salt = yaml.safe_load((RECIPE / "salt_vitb16.yaml").read_text())
    return {
        "salt": salt,
        "stage1": yaml.safe_load((RECIPE / "teacher_stage1_vitb16.yaml").read_text()),
        "ema": _merge(salt, yaml.safe_load((RECIPE / "ema_ijepa.yaml").read_text())),
    }


_MISSING = object()


def _get(config: dict, path: str) -> Any:
    if "*" in path:
        values = [_get(config, part) for part in path.split("*")]
        return _MISSING if _MISSING in values else math.prod(values)
    node: Any = config
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return _MISSING
        node = node[key]
    return node


def _default(spec: str) -> Any:
    """``package.module.Class.param``: the parameter's default in the class's signature."""
    owner, param = spec.rsplit(".", 1)
    module_name, cls = owner.rsplit(".", 1)
    value = inspect.signature(getattr(importlib.import_module(module_name), cls)).parameters[param]
    return value.default


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def _value(entry: dict, config: dict, paths: str | list[str]) -> Any:
    got = []
    for path in paths if isinstance(paths, list) else [paths]:
        value = _get(config, path)
        if value is _MISSING:
            assert "default" in entry, f"{entry['name']}: {path} unset and no default given"
            value = _default(entry["default"])
        got.append(value)
    return got if isinstance(paths, list) else got[0]


def _register_row(row_id: str) -> str:
    for line in FIDELITY.splitlines():
        if re.match(rf"\|\s*{re.escape(row_id)}\s*\|", line):
            return line
    return ""


CASES = [(e["name"], name) for e in TABLE for name in e["check"]]


@pytest.mark.parametrize(("entry_name", "config_name"), CASES)
def test_recipe_matches_the_reference_or_registers_the_difference(entry_name, config_name):
    entry = next(e for e in TABLE if e["name"] == entry_name)
    assert entry.get("source"), f"{entry_name}: every reference value names its source"
    value = _value(entry, _configs()[config_name], entry["check"][config_name])
    if _same(value, entry["reference"]):
        return
    row = _register_row(entry.get("register", ""))
    assert row, (
        f"{config_name}: {entry_name} is {value!r}, the reference {entry['reference']!r} "
        f"({entry['source']}); register it in docs/fidelity.md or restore it"
    )
    assert entry.get("restore") and entry["restore"] in row, (
        f"{entry_name}: fidelity row {entry['register']} does not give the restoring line "
        f"{entry.get('restore')!r}"
    )


def test_the_table_checks_what_it_names():
    """A path that names nothing would pass silently: each must exist in its config or
    come with a default."""
    configs = _configs()
    for entry in TABLE:
        for name, paths in entry["check"].items():
            for path in paths if isinstance(paths, list) else [paths]:
                present = _get(configs[name], path) is not _MISSING
                assert present or "default" in entry, f"{entry['name']}: {name}: {path}"


def test_fidelity_table_rows_are_whole():
    """Each register table is one block: no blank line cuts a row out of it."""
    for block in re.split(r"\n## ", FIDELITY)[1:]:
        rows = [line for line in block.splitlines() if line.startswith("|")]
        body = block[block.index("|") :] if rows else ""
        assert "\n\n|" not in body, f"a blank line splits the table under {block.splitlines()[0]!r}"
