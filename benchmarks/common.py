"""What several benchmark scripts share: a row in a process of its own (so peak memory and
imports are its own), medians over interleaved rounds, a measured matmul peak."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

#: bytes in the GB of every memory column of the benchmarks
GB = 1e9


def peak_rss_gb() -> float:
    """This process's peak resident memory so far (GB; Linux gives ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB


def rss_gb() -> float:
    """This process's resident memory now (GB), from ``/proc/self/statm``."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / GB


def in_child(script: str, env: dict[str, str] | None = None, **flags: Any) -> dict[str, Any]:
    """Run ``python script --flag value ...`` (``flag_name`` becomes ``--flag-name``), with
    ``env`` added to this process's environment, and return the JSON object the child
    prints on its last line."""
    command = [sys.executable, script]
    for name, value in flags.items():
        command += [f"--{name.replace('_', '-')}", str(value)]
    child_env = {**os.environ, **env} if env else None
    out = subprocess.check_output(command, text=True, env=child_env).strip().splitlines()
    return json.loads(out[-1])


def interleaved(
    script: str, names: list[str], repeats: int, key: str, **flags: Any
) -> list[dict[str, Any]]:
    """Run every name of ``names`` in its own child (``--key name`` and ``flags``, see
    :func:`in_child`) ``repeats`` rounds over, the rounds interleaved so that drift of the
    machine hits every row alike. Returns one dict per run: ``key``, ``round`` and the
    child's figures."""
    runs = []
    for round_ in range(repeats):
        for name in names:
            runs.append({key: name, "round": round_, **in_child(script, **{key: name}, **flags)})
            print(runs[-1], flush=True)
    return runs


def interleaved_with_memory(
    script: str, names: list[str], repeats: int, key: str, **flags: Any
) -> list[dict[str, Any]]:
    """:func:`interleaved`, then one untimed child per name run as ``--key name --memory 1``
    and ``flags``, which prints its ``peak_tensor_gb``; every run gets its name's figure.
    One memory pass is enough: a row's allocations repeat exactly from run to run, and the
    profiler that reads them would swell a timed run's resident memory."""
    runs = interleaved(script, names, repeats, key, **flags)
    tensor = {
        name: in_child(script, **{key: name}, memory=1, **flags)["peak_tensor_gb"]
        for name in names
    }
    for run in runs:
        run["peak_tensor_gb"] = tensor[run[key]]
    return runs


def summarise(runs: Any, by: list[str]) -> Any:
    """One row per ``by`` group of ``runs`` (a DataFrame with a ``round`` column, or one
    run per row): the medians over its rounds and its images/s range."""
    if runs.empty:
        return runs
    spread = runs.groupby(by[0], sort=False).images_per_s.agg(["min", "max"])
    medians = runs.groupby(by, sort=False).median(numeric_only=True)
    medians = medians.drop(columns="round", errors="ignore").reset_index()
    medians["images_per_s_range"] = [
        f"{spread.loc[r, 'min']:.2f}-{spread.loc[r, 'max']:.2f}" for r in medians[by[0]]
    ]
    return medians


def matmul_peak(
    device: str = "cpu", dtype: Any = None, n: int = 2048, reps: int = 10, backend: str = "torch"
) -> float:
    """Measured GFLOP/s of an ``n x n`` matmul on ``device`` (the best of ``reps``; on CPU
    with the threads torch is set to). ``backend``: ``torch`` (``torch.mm``, the BLAS torch
    was built with, MKL in the x86 wheels) or ``onednn`` (the oneDNN linear op torch also
    ships, CPU only; see :func:`cpu_matmul_peak`)."""
    import torch

    dtype = dtype or torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)

    def product() -> Any:
        if backend == "onednn":
            return torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [None], "none")
        return a @ b

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    for _ in range(3):
        product()
    sync()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        product()
        sync()
        times.append(time.perf_counter() - start)
    return 2 * n**3 / min(times) / 1e9


def cpu_matmul_peak(dtype: Any = None) -> float:
    """The CPU's matmul peak as torch can reach it: the better of ``torch.mm`` and oneDNN's
    linear op, so that a roofline is not set by one library's kernel."""
    import torch

    peaks = [matmul_peak(dtype=dtype)]
    if torch.backends.mkldnn.is_available():
        peaks.append(matmul_peak(dtype=dtype, backend="onednn"))
    return max(peaks)


def flop_counter() -> Any:
    """A ``torch.utils.flop_counter.FlopCounterMode`` (no display) that also counts the
    CPU's fused attention. torch has formulas for the CUDA SDPA kernels only, so on the
    CPU ``aten._scaled_dot_product_flash_attention_for_cpu`` and its backward counted 0
    FLOPs: the CUDA kernels' formulas (``QK^T`` and ``PV``, dense over every key, and
    their gradients) are registered for them here."""
    import torch
    from torch.utils import flop_counter as fc

    def forward(query: Any, key: Any, value: Any, *args: Any, **kwargs: Any) -> int:
        return int(fc.sdpa_flop_count(query, key, value))  # shapes, not tensors

    def backward(grad: Any, query: Any, key: Any, value: Any, *args: Any, **kwargs: Any) -> int:
        return int(fc.sdpa_backward_flop_count(grad, query, key, value))

    aten = torch.ops.aten
    return fc.FlopCounterMode(
        display=False,
        custom_mapping={
            aten._scaled_dot_product_flash_attention_for_cpu: forward,
            aten._scaled_dot_product_flash_attention_for_cpu_backward: backward,
        },
    )


class TensorMemory:
    """Peak bytes held by live tensors on the CPU while the context is open, from the
    allocator's own record (``torch.profiler`` with ``profile_memory``): the CPU's analog
    of ``torch.cuda.max_memory_allocated``. Unlike peak resident memory it leaves out the
    interpreter and imported libraries and the heap that the C allocator keeps after
    tensors are freed. Tensors made before the context opened and freed inside it count
    negative, so open it before the models are built. ``peak`` (bytes) is set on exit."""

    def __init__(self) -> None:
        self.peak = 0

    def __enter__(self) -> TensorMemory:
        from torch.profiler import ProfilerActivity, profile

        self._prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
        self._prof.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._prof.__exit__(*exc)
        events = self._prof.profiler.kineto_results.events()  # type: ignore[union-attr]
        deltas = sorted(
            (e.start_ns(), e.nbytes()) for e in events
            if e.name() == "[memory]" and e.device_type().name == "CPU"
        )  # fmt: skip
        live = peak = 0
        for _, nbytes in deltas:
            live += nbytes
            peak = max(peak, live)
        self.peak = peak
