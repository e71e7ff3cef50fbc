"""The house rule on imports: layers only point down, and no module imports itself back.

Every ``import`` in ``usjepa/`` counts, the ones inside functions included (a lazy import
hides a dependency; it does not remove it)."""

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "usjepa"
#: a package may import the packages of lower rank, and itself
RANK = {
    "errors": -1,
    "atomic": -1,
    "models": 0,
    "masks": 1,
    "losses": 1,
    "data": 2,
    "methods": 3,
    "callbacks": 4,  # callbacks read the methods' modules (the trained network)
    "eval": 5,
    "pretrain_cli": 5,  # the LightningCLI behind `usjepa pretrain`, loaded on first use
    "cli": 6,
    "__main__": 7,
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the usjepa modules it imports (``from a import b`` counts ``a.b`` when
    that is a module, else ``a``)."""
    edges: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module.split(".")[0] != "usjepa":
                    continue
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    edges[name].add(sub if sub in modules else node.module)
            elif isinstance(node, ast.Import):
                edges[name] |= {a.name for a in node.names if a.name.split(".")[0] == "usjepa"}
    return edges


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_layers_only_point_down():
    wrong = []
    for source, targets in _imports(_modules()).items():
        for target in targets:
            a, b = _layer(source), _layer(target)
            if a in ("__init__", b) or b == "__init__":
                continue
            if RANK[b] >= RANK[a]:
                wrong.append(f"{source} -> {target} ({a} may not import {b})")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_cycles_between_modules():
    modules = _modules()
    # a package's __init__ only re-exports its modules: edges into packages are left out
    files = {m for m, p in modules.items() if p.name != "__init__.py"}
    edges = {m: {t for t in ts if t in files and t != m} for m, ts in _imports(modules).items()}
    cycles, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(cycles)


def test_the_checks_catch_what_they_guard(tmp_path, monkeypatch):
    """Both checks fail on a planted upward import and a planted cycle."""
    fake = tmp_path / "usjepa"
    (fake / "models").mkdir(parents=True)
    (fake / "data").mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "models/__init__.py").write_text("")
    (fake / "data/__init__.py").write_text("")
    (fake / "models/a.py").write_text("from usjepa.data import b\n")
    (fake / "data/b.py").write_text("from usjepa.models import a\n")
    monkeypatch.setattr(f"{__name__}.PACKAGE", fake)
    for check in (test_layers_only_point_down, test_no_import_cycles_between_modules):
        try:
            check()
        except AssertionError:
            continue
        raise AssertionError(f"{check.__name__} passed on a planted violation")
