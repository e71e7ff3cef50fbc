"""The documentation's worked examples run as written."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def shell_blocks(doc: Path, section: str) -> list[str]:
    """The ```bash blocks of one ``## section`` of a Markdown file, in order."""
    text = doc.read_text()
    start = text.index(f"## {section}")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```bash\n(.*?)```", text[start : end if end > 0 else None], re.S)


def test_data_pipeline_walkthrough(tmp_path: Path) -> None:
    blocks = shell_blocks(ROOT / "docs" / "data_pipeline.md", "The whole path")
    assert len(blocks) == 4
    env = {
        **os.environ,
        "WALK": str(tmp_path),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    script = "set -euo pipefail\n" + "\n".join(blocks)
    done = subprocess.run(
        ["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # the leakage check found the lung task's test frames, and only those
    with open(tmp_path / "leaks.csv") as f:
        leaks = list(csv.DictReader(f))
    test_images = {
        r["image"] for r in json.loads((tmp_path / "lung_task" / "test.json").read_text())
    }
    assert {row["test_image"] for row in leaks} == test_images and len(test_images) == 14
    table = (tmp_path / "probe" / "probe_table.md").read_text()
    assert "random_init" in table and "| run " in table and "lung_task" in table
    assert table in done.stdout  # the last command printed it


def test_extending_examples_run(tmp_path: Path, monkeypatch) -> None:
    text = (ROOT / "docs" / "extending.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 5
    monkeypatch.chdir(tmp_path)  # the examples write their files here
    namespace: dict = {"__name__": "docs_extending"}
    for block in blocks:
        exec(compile(block, "docs/extending.md", "exec"), namespace)
