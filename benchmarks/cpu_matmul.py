"""fp32 products of a ViT-S/16 training step on the CPU: torch's BLAS against oneDNN.

The linear layers of issue 13's SALT step (ViT-S/16 student and teacher, predictor width
384, batch 16) as ``usjepa.models.cpu_matmul`` runs them: the forward product
(``F.linear``), the input gradient (``grad @ W``) and the weight gradient
(``grad.T @ x``), each through torch's BLAS (``torch.mm`` / ``torch.addmm``: MKL in the
x86 wheels) and through oneDNN (``torch.ops.mkldnn._linear_pointwise``, what
``USJEPA_CPU_MATMUL=onednn`` runs), side by side in one process, alternating, best of
``--reps`` each. Rows: 16 x 180 tokens (a student's context plus CLS) and 16 x 280 (the
one-pass predictor's context and targets), through the layers of a block (qkv, projection,
MLP in and out). Also the largest difference from the BLAS result, relative to its
largest entry (both are fp32; they sum in another order). This CPU's model and the
choice ``USJEPA_CPU_MATMUL=auto`` would make are recorded with them.

    python benchmarks/cpu_matmul.py [--threads 2] [--reps 10]

Writes ``benchmarks/results/cpu_matmul.{csv,md}``.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
#: (layer, in features, out features) of a ViT-S block (width 384, MLP 1536)
LAYERS = [("qkv", 384, 1152), ("proj", 384, 384), ("mlp in", 384, 1536), ("mlp out", 1536, 384)]


def cpu_model() -> str:
    """The CPU's model name, from ``/proc/cpuinfo`` where there is one."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def products(x: Any, w: Any, b: Any, grad: Any) -> dict[str, tuple[Any, Any]]:
    """A linear layer's three products, each as (BLAS, oneDNN) callables."""
    import torch

    from usjepa.models.cpu_matmul import _product

    return {
        "forward": (lambda: torch.addmm(b, x, w.t()), lambda: _product(x, w, b)),
        "input gradient": (lambda: grad.mm(w), lambda: _product(grad, w.t())),
        "weight gradient": (lambda: grad.t().mm(x), lambda: _product(grad.t(), x.t())),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=10)
    args = parser.parse_args()
    import pandas as pd
    import torch

    from usjepa.models import cpu_matmul

    torch.set_num_threads(args.threads)
    if not cpu_matmul.available():
        raise SystemExit("cpu_matmul: this torch has no oneDNN linear op")
    g = torch.Generator().manual_seed(0)

    def best(fn: Any) -> float:
        fn()
        times = []
        for _ in range(args.reps):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    rows = []
    for tokens in (16 * 180, 16 * 280):
        for layer, k, n in LAYERS:
            x = torch.randn(tokens, k, generator=g)
            w, b = torch.randn(n, k, generator=g) / k**0.5, torch.randn(n, generator=g)
            grad = torch.randn(tokens, n, generator=g)
            for case, (blas, onednn) in products(x, w, b, grad).items():
                ref, ours = blas(), onednn()
                diff = float((ours - ref).abs().max() / ref.abs().max())
                t_blas, t_onednn = best(blas), best(onednn)
                t_blas = min(t_blas, best(blas))  # alternate, best of both turns
                t_onednn = min(t_onednn, best(onednn))
                flops = 2 * tokens * k * n
                rows.append({
                    "rows": tokens, "layer": layer, "product": case,
                    "blas_gflops": flops / t_blas / 1e9, "onednn_gflops": flops / t_onednn / 1e9,
                    "onednn_vs_blas": t_blas / t_onednn, "relative_difference": diff,
                })  # fmt: skip
                print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(OUT / "cpu_matmul.csv", index=False)
    speedup = cpu_matmul.onednn_speedup()
    auto = "onednn" if speedup >= cpu_matmul.AUTO_MARGIN else "blas"
    lines = [
        "# fp32 linear-layer products on the CPU: torch's BLAS against oneDNN",
        "",
        f"CPU: {cpu_model()}, {args.threads} threads; torch {torch.__version__}. The products "
        "of a ViT-S/16 block at issue 13's batch (16 images): the student's context (180 "
        "tokens each) and the one-pass predictor's sequence (280), as "
        "`usjepa.models.cpu_matmul` runs them. BLAS: `torch.addmm` / `torch.mm`; oneDNN: "
        "`torch.ops.mkldnn._linear_pointwise` (`USJEPA_CPU_MATMUL=onednn`). GFLOP/s from "
        f"the best of {args.reps} runs each, the two alternating. Relative difference: the "
        "largest difference from the BLAS result over its largest entry. Command: `python "
        "benchmarks/cpu_matmul.py`.",
        "",
        f"Median over the rows: BLAS {table.blas_gflops.median():.0f} GFLOP/s, oneDNN "
        f"{table.onednn_gflops.median():.0f} GFLOP/s ({table.onednn_vs_blas.median():.2f}x). "
        f"`USJEPA_CPU_MATMUL=auto` measured oneDNN {speedup:.2f}x faster on its probe "
        f"product and would choose `{auto}` here (it takes oneDNN from "
        f"{cpu_matmul.AUTO_MARGIN}x).",
        "",
        "| rows | layer | product | BLAS GFLOP/s | oneDNN GFLOP/s | oneDNN vs BLAS | "
        "relative difference |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['rows']} | {r['layer']} | {r['product']} | {r['blas_gflops']:.0f} | "
            f"{r['onednn_gflops']:.0f} | {r['onednn_vs_blas']:.2f}x | "
            f"{r['relative_difference']:.1e} |"
        )
    (OUT / "cpu_matmul.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
