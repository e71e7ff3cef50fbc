"""The measuring helpers the benchmarks share (``benchmarks/common.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from common import TensorMemory, flop_counter  # noqa: E402


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


def test_interleaved_with_memory_gives_every_run_its_rows_memory(tmp_path: Path) -> None:
    """Timed rounds come first and interleaved; then one memory child per row, whose
    figure every run of that row carries."""
    from common import interleaved_with_memory

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
        ("a", 0, 1.5), ("b", 0, 2.5), ("a", 1, 1.5), ("b", 1, 2.5)
    ]
    assert log.read_text().split("\n")[:-1] == [
        "a 0 3", "b 0 3", "a 0 3", "b 0 3", "a 1 3", "b 1 3"
    ]
