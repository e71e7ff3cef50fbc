"""The measuring helpers the benchmarks share (``benchmarks/common.py``)."""

from __future__ import annotations

import mmap
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from benchmarks.common import TensorMemory, flop_counter, peak_rss_gb, rss_gb


def test_flop_counter_counts_cpu_fused_attention() -> None:
    """The fused kernel is counted like the unfused softmax(QK^T)V it stands for; torch's
    own counter gives it nothing on the CPU."""
    q, k, v = (torch.randn(2, 3, 10, 8) for _ in range(3))
    with flop_counter() as fused:
        F.scaled_dot_product_attention(q, k, v)
    with flop_counter() as unfused, sdpa_kernel(SDPBackend.MATH):
        F.scaled_dot_product_attention(q, k, v)
    assert fused.get_total_flops() == unfused.get_total_flops() == 2 * (2 * 2 * 3 * 10 * 10 * 8)

    q.requires_grad_(True)
    with flop_counter() as both:
        F.scaled_dot_product_attention(q, k, v).sum().backward()
    # the backward adds dQ, dK, dV, dP and the recomputed scores: five QK^T-sized products
    assert both.get_total_flops() == 7 * (2 * 2 * 3 * 10 * 10 * 8)


def test_tensor_memory_is_the_peak_of_live_tensors() -> None:
    with TensorMemory() as memory:
        a = torch.empty(1000, 1000)  # 4 MB
        b = torch.empty(500, 1000)  # 2 MB more: the peak
        del a
        c = torch.empty(250, 1000)  # 1 MB, after 4 MB were freed
    assert memory.peak == 6_000_000
    assert b.numel() and c.numel()


def test_resident_memory_is_in_gb_of_ten_to_the_nine_bytes() -> None:
    """Both readings in 10^9 bytes: the kernel's own kB (KiB) figures, converted, agree;
    memory touched now shows in both."""

    def status_gb(field: str) -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024 / 1e9
        raise AssertionError(field)

    before = rss_gb()
    # 0.05 GB in a mapping of its own (memory from the heap may already be resident)
    block = mmap.mmap(-1, 50_000_000)
    block.write(b"\x01" * len(block))  # every page touched
    now, kernel_now = rss_gb(), status_gb("VmRSS")
    assert abs(now - kernel_now) < 0.005
    assert now - before > 0.045
    assert abs(peak_rss_gb() - status_gb("VmHWM")) < 0.005
    assert peak_rss_gb() >= now - 0.005
    block.close()


def test_interleaved_with_memory_gives_every_run_its_rows_memory(tmp_path: Path) -> None:
    """Timed rounds come first and interleaved; then one memory child per row, whose
    figure every run of that row carries."""
    from benchmarks.common import interleaved_with_memory

    log = tmp_path / "calls.txt"
    child = tmp_path / "child.py"
    child.write_text(
        "import argparse, json\n"
        "p = argparse.ArgumentParser()\n"
        "p.add_argument('--row'); p.add_argument('--memory', type=int, default=0)\n"
        "p.add_argument('--steps', type=int)\n"
        "a = p.parse_args()\n"
        f"open({str(log)!r}, 'a').write(f'{{a.row}} {{a.memory}} {{a.steps}}\\n')\n"
        "size = {'a': 1.5, 'b': 2.5}[a.row]\n"
        "print(json.dumps({'peak_tensor_gb': size} if a.memory else {'images_per_s': 1.0}))\n"
    )
    runs = interleaved_with_memory(str(child), ["a", "b"], 2, "row", steps=3)
    assert [(r["row"], r["round"], r["peak_tensor_gb"]) for r in runs] == [
        ("a", 0, 1.5),
        ("b", 0, 2.5),
        ("a", 1, 1.5),
        ("b", 1, 2.5),
    ]
    assert log.read_text().split("\n")[:-1] == [
        "a 0 3",
        "b 0 3",
        "a 0 3",
        "b 0 3",
        "a 1 3",
        "b 1 3",
    ]


def _top_level_names(path: Path) -> set[str]:
    """The names a module defines or imports at its top level."""
    import ast

    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


ROOT = Path(__file__).resolve().parents[2]


def _modules() -> dict[str, Path]:
    """Every benchmark module by its dotted name (``benchmarks.perf.step_suite``)."""
    return {
        ".".join(p.relative_to(ROOT).with_suffix("").parts): p
        for p in sorted((ROOT / "benchmarks").rglob("*.py"))
        if "tests" not in p.parts and p.name != "__init__.py"
    }


def test_benchmark_scripts_import_only_what_their_siblings_define() -> None:
    """A benchmark script that imports a name another benchmark module no longer has fails
    only when someone runs ``make bench``; lint does not type-check ``benchmarks/``."""
    import ast

    siblings = _modules()
    missing = []
    for script in siblings.values():
        for node in ast.walk(ast.parse(script.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module in siblings:
                defined = _top_level_names(siblings[node.module])
                missing += [
                    f"{script.name}: {node.module}.{a.name}"
                    for a in node.names
                    if a.name not in defined
                ]
    assert not missing, missing


def test_every_benchmark_script_imports() -> None:
    """Each script under ``benchmarks/`` imports cleanly (one child process, so their
    module names stay out of this one); the peers they compare with load lazily."""
    import subprocess

    names = sorted(_modules())
    assert len(names) >= 20, names  # the glob found the scripts
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)"
    done = subprocess.run(
        [sys.executable, "-c", code, *names],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_rewritten_result_is_no_uncommitted_change_but_code_is(tmp_path, monkeypatch) -> None:
    """A run that replaces a recorded result writes it before its environment is read:
    that must not mark the run as made on uncommitted code, while a change to code must."""
    import subprocess

    import benchmarks.common as common

    def git(*args: str) -> None:
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True
        )

    (tmp_path / "benchmarks/results").mkdir(parents=True)
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "benchmarks/results/run.csv").write_text("a\n1\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "first")
    monkeypatch.setattr(common, "ROOT", tmp_path)
    (tmp_path / "benchmarks/results/run.csv").write_text("a\n2\n")
    assert common.environment()["uncommitted_changes"] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    assert common.environment()["uncommitted_changes"] is True


def test_the_environment_names_the_image_libraries_a_data_result_depends_on():
    # scan-region masks moved by up to 0.001 IoU between two installs of one commit
    import cv2
    import numpy

    import benchmarks.common as common

    env = common.environment()
    assert env["opencv"] == cv2.__version__
    assert env["numpy"] == numpy.__version__
