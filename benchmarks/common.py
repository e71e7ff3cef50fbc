"""What several benchmark scripts share: a row in a process of its own (so peak memory and
imports are its own), medians over interleaved rounds, a measured matmul peak."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any


def in_child(script: str, **flags: Any) -> dict[str, Any]:
    """Run ``python script --flag value ...`` (``flag_name`` becomes ``--flag-name``) and
    return the JSON object the child prints on its last line."""
    command = [sys.executable, script]
    for name, value in flags.items():
        command += [f"--{name.replace('_', '-')}", str(value)]
    out = subprocess.check_output(command, text=True).strip().splitlines()
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


def matmul_peak(device: str = "cpu", dtype: Any = None, n: int = 2048, reps: int = 10) -> float:
    """Measured GFLOP/s of an ``n x n`` matmul on ``device`` (the best of ``reps``; on CPU
    with the threads torch is set to)."""
    import torch

    dtype = dtype or torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    for _ in range(3):
        a @ b
    sync()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        a @ b
        sync()
        times.append(time.perf_counter() - start)
    return 2 * n**3 / min(times) / 1e9
