"""Figures the README and docs quote must be held by a results file in benchmarks/results/.

A figure is a measurement written in prose: a number with a decimal point, or a number
followed by a unit (%, x, MB, s, frames/s ...). Numbers in code spans and code blocks
are settings and commands, not measurements, and are not checked; nor are arXiv ids.

Each figure is looked up in the results files its section (heading to heading) cites by
path (``benchmarks/results/...``); a section that cites none is checked against every
results file. A figure matches a result when the result, rounded to the figure's
precision, equals it (``2.3`` matches ``2.29``, ``33,000`` matches ``32,972``), and a
percentage also matches a fraction (``48 %`` matches ``0.479``).
"""

from __future__ import annotations

import csv
import re
from decimal import Decimal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RESULT_SUFFIXES = {".md", ".csv", ".json", ".txt", ".yaml"}

UNIT = r"\s?(?:%|x\b|[KMG]B\b|ms\b|s\b|minutes\b|min\b|[a-z]+/s\b|points\b)"
FIGURE = re.compile(rf"(?<![\w.,])(\d{{1,3}}(?:,\d{{3}})+|\d+)(\.\d+)?(?=(\.\d)?)(?P<unit>{UNIT})?")
NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?(?:[eE][+-]?\d+)?")
CITE = re.compile(r"benchmarks/results/[\w./-]*\w")


def _result_numbers() -> dict[str, set[Decimal]]:
    held: dict[str, set[Decimal]] = {}
    for path in RESULTS.rglob("*"):
        if path.is_file() and path.suffix in RESULT_SUFFIXES:
            text = path.read_text(errors="ignore")
            held[path.relative_to(ROOT).as_posix()] = _numbers(text, path.suffix == ".csv")
    return held


def _numbers(text: str, is_csv: bool) -> set[Decimal]:
    """The numbers in a results file's text; a CSV's cell by cell, so that ``2,5.44``
    (a round, then a rate) reads as 2 and 5.44, not as 25.44."""
    cells = [c for row in csv.reader(text.splitlines()) for c in row] if is_csv else [text]
    return {Decimal(n.replace(",", "")) for cell in cells for n in NUMBER.findall(cell)}


def _sections(text: str) -> list[str]:
    text = re.sub(r"```.*?```", "\n", text, flags=re.S)
    return re.split(r"\n(?=#)", text)


def _prose(section: str) -> str:
    prose = re.sub(r"`[^`]*`", " ", section)
    prose = re.sub(r"\]\([^)]*\)", "]", prose)  # link targets
    prose = re.sub(r"<[^>]*>", " ", prose)  # html comments and tags
    return re.sub(r"arXiv \d+\.\d+", " ", prose)


def figures(section: str) -> list[tuple[str, bool]]:
    """The measured figures written in a section's prose, as written (commas dropped),
    each with whether it is a percentage."""
    found = []
    for m in FIGURE.finditer(_prose(section)):
        whole, frac, unit = m.group(1), m.group(2), m.group("unit")
        if frac or unit:
            found.append((whole.replace(",", "") + (frac or ""), bool(unit) and "%" in unit))
    return found


def matches(figure: str, held: set[Decimal], percent: bool) -> bool:
    """Whether a result rounds to ``figure`` (a fraction, times 100, for a percentage)."""
    value = Decimal(figure)
    if "." in figure:
        step = Decimal(1).scaleb(-len(figure.split(".")[1]))
    else:  # 33000 is given to the thousand, 148 to the unit
        step = Decimal(1).scaleb(len(figure) - len(figure.rstrip("0")))
    candidates = held | ({h * 100 for h in held if h <= 1} if percent else set())
    return any(abs(c - value) <= step / 2 for c in candidates)


def unsourced(text: str, held: dict[str, set[Decimal]]) -> list[str]:
    """Figures of ``text`` that no cited (or, uncited, no) results file holds."""
    every = set().union(*held.values())
    missing = []
    for section in _sections(text):
        cited = {c.removesuffix("README.md").rstrip("/.") for c in CITE.findall(section)}
        files = [k for k in held if any(k == c or k.startswith(c + "/") for c in cited)]
        pool = set().union(*(held[k] for k in files)) if files else every
        title = section.strip().splitlines()[0] if section.strip() else ""
        for figure, percent in figures(section):
            if not matches(figure, pool, percent):
                missing.append(f"{figure} in {title!r}")
    return missing


def test_matching_rules() -> None:
    held = {Decimal("2.29"), Decimal("32972"), Decimal("0.479"), Decimal("148")}
    assert matches("2.3", held, False) and matches("33000", held, False)
    assert matches("48", held, True) and matches("148", held, False)
    assert not matches("2.4", held, False) and not matches("48", held, False)
    assert not matches("33500", held, False) and not matches("149", held, False)
    text = "## A\nIt took 3.7 s, `lr 0.05` and 8 GPUs, in arXiv 2602.19322.\n"
    assert figures(text) == [("3.7", False)]
    assert figures("## B\nIt kept 48 % of the region.\n") == [("48", True)]
    assert unsourced(text, {"benchmarks/results/a.md": {Decimal("3.71")}}) == []
    assert unsourced(text, {"benchmarks/results/a.md": {Decimal("3.9")}}) == ["3.7 in '## A'"]
    # a cited file scopes the lookup: a figure held only elsewhere does not count
    cited = "## B\nSee benchmarks/results/b.md: 3.7 s.\n"
    other = {"benchmarks/results/b.md": {Decimal(1)}, "benchmarks/results/c.md": {Decimal("3.7")}}
    assert unsourced(cited, other) == ["3.7 in '## B'"]
    # a CSV is read cell by cell: the round column does not run into the next figure
    assert _numbers("row,round,rate\nours,2,5.444\n", is_csv=True) == {2, Decimal("5.444")}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_quoted_figure_is_in_a_results_file(doc: Path) -> None:
    missing = unsourced(doc.read_text(), _result_numbers())
    assert not missing, (
        f"{doc.name} quotes figures no results file in benchmarks/results/ holds (re-run "
        f"the benchmark that makes them, or cite its results file in the section): {missing}"
    )
