"""The results pages (docs/results/) are generated from benchmarks/results/, and the
README's demo table is one of them."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

from tests.conftest import ROOT


def _check(root) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(root / "docs" / "render_results.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _copy_results(tmp_path) -> None:
    """The renderer, the pages and the results they read, under ``tmp_path``."""
    for rel in ("docs/render_results.py", "docs/results", "benchmarks/results"):
        src, dst = ROOT / rel, tmp_path / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.png", "*.csv"))
        else:
            shutil.copy(src, dst)


def test_committed_pages_are_what_the_results_files_give():
    proc = _check(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_results_file_changed_without_its_page_fails(tmp_path):
    """Copy the renderer, the pages and the results they read; change one figure."""
    _copy_results(tmp_path)
    assert _check(tmp_path).returncode == 0
    demo = tmp_path / "benchmarks/results/quality/demo/demo_plain_core.md"
    demo.write_text(demo.read_text().replace("59.7 ± 2.1", "59.8 ± 2.1"))
    proc = _check(tmp_path)
    assert proc.returncode == 1 and "demo.md" in proc.stdout


def test_figures_given_as_a_list_reach_the_page_too(tmp_path):
    """A run's figures in a bullet list (the real corpus's leakage check) are on its page:
    changing one makes the committed page stale."""
    _copy_results(tmp_path)
    corpus = tmp_path / "benchmarks/results/data/real_corpus/real_corpus.md"
    text = corpus.read_text()
    assert "- Leakage check against the task: 0 matching frame pairs" in text
    corpus.write_text(text.replace("0 matching frame pairs", "3 matching frame pairs"))
    proc = _check(tmp_path)
    assert proc.returncode == 1 and "real_data.md" in proc.stdout


def test_readme_quotes_only_the_demo_table_from_its_page():
    readme = (ROOT / "README.md").read_text()
    page = (ROOT / "docs/results/demo.md").read_text()
    rows = [ln for ln in readme.splitlines() if re.match(r"\|\s*(random_init|teacher|student)", ln)]
    assert rows, "the README's demo table"
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        figure = cells[-1]
        assert re.fullmatch(r"\d+\.\d ± \d+\.\d", figure), row
        assert figure in page, f"{figure} is not in docs/results/demo.md"
    assert "docs/results/" in readme


def test_readme_comparisons_are_the_central_reports_figures():
    """Every difference and interval the README's comparison section quotes is a row of
    the central experiment's report, as that report prints it."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## What the comparisons show on real scans")[1].split("\n## ")[0]
    report = (ROOT / "benchmarks/results/quality/central/central.md").read_text()
    quoted = re.findall(r"([+-]\d+\.\d) (\[[+-]\d+\.\d, [+-]\d+\.\d\])", section)
    assert len(quoted) == 8, section
    for difference, interval in quoted:
        assert f"| {difference} | {interval} |" in report, f"{difference} {interval}"
    adjusted = re.findall(r"\((\[[+-]\d+\.\d, [+-]\d+\.\d\])\)", section)
    assert adjusted and all(f"| {a} |" in report for a in adjusted)
    assert "benchmarks/results/quality/central/" in section
