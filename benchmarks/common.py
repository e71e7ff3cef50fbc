"""What several benchmark scripts share: where a script's results go and the environment
they were measured in, a row in a process of its own (so peak memory and imports are its
own), medians over interleaved rounds, a measured matmul peak."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

#: the repository root; benchmark scripts run from it as modules (``python -m benchmarks...``)
ROOT = Path(__file__).resolve().parents[1]

#: bytes in the GB of every memory column of the benchmarks
GB = 1e9


def peak_rss_gb() -> float:
    """This process's peak resident memory so far (GB; Linux gives ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB


def rss_gb() -> float:
    """This process's resident memory now (GB), from ``/proc/self/statm``."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / GB


def results_dir(script: str) -> Path:
    """The folder a benchmark script writes to: ``benchmarks/<question>/<name>.py`` writes
    under ``benchmarks/results/<question>/<name>/``."""
    path = Path(script).resolve()
    return ROOT / "benchmarks" / "results" / path.parent.name / path.stem


#: the recorded results, left out of the uncommitted-changes check
RESULTS_SPEC = ":(exclude)benchmarks/results"


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def environment() -> dict[str, Any]:
    """What a result depends on besides the code: the commit (and whether the tree had
    uncommitted changes, results aside: a run that replaces a recorded result has
    rewritten it before this is read), the command, library versions, the CPU or GPU
    model, threads."""
    import cv2
    import lightning
    import numpy
    import timm
    import torch

    cpu = platform_cpu()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "date": date.today().isoformat(),
        "commit": _git("rev-parse", "--short", "HEAD") or None,
        "uncommitted_changes": bool(
            _git("status", "--porcelain", "--untracked-files=no", "--", ".", RESULTS_SPEC)
        ),
        "command": " ".join(["python", "-m", _module_of(sys.argv[0]), *sys.argv[1:]]),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "timm": timm.__version__,
        "lightning": lightning.__version__,
        # the data benchmarks' masks and frames move with OpenCV's and NumPy's versions
        "opencv": cv2.__version__,
        "numpy": numpy.__version__,
        "cpu": cpu,
        "cpu_cores_visible": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
    }


def platform_cpu() -> str | None:
    """The CPU's model name from ``/proc/cpuinfo`` (None where the file has none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def record_env(result: Path | str) -> Path:
    """Write :func:`environment` beside a result file (``x.md`` gets ``x.env.json``)."""
    path = Path(result).with_suffix(".env.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(environment(), indent=1) + "\n")
    return path


def _module_of(script: str) -> str:
    """``benchmarks/perf/x.py`` -> ``benchmarks.perf.x`` (a script outside the repository
    keeps its path)."""
    path = Path(script).resolve()
    try:
        rel = path.relative_to(ROOT)
    except ValueError:
        return str(script)
    return ".".join(rel.with_suffix("").parts)


def in_child(script: str, env: dict[str, str] | None = None, **flags: Any) -> dict[str, Any]:
    """Run ``python -m <script's module> --flag value ...`` from the repository root (a
    script outside it by its path; ``flag_name`` becomes ``--flag-name``), with ``env``
    added to this process's environment; return the JSON object the child prints last."""
    module = _module_of(script)
    # a script outside the repository (a test's) runs by its path
    command = [sys.executable, *([script] if module == str(script) else ["-m", module])]
    for name, value in flags.items():
        command += [f"--{name.replace('_', '-')}", str(value)]
    child_env = {**os.environ, **env} if env else None
    out = subprocess.check_output(command, text=True, env=child_env, cwd=ROOT)
    out = out.strip().splitlines()
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
        name: in_child(script, **{key: name}, memory=1, **flags)["peak_tensor_gb"] for name in names
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
