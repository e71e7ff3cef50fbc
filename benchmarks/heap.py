"""Why peak RSS and peak tensor memory tell different stories on the CPU, and what the
allocator settings do to it, for our SALT step and stable-pretraining's.

``peer_step.py`` finds our SALT step with selective checkpointing at about three
quarters of the peer's peak tensor memory but only about nine tenths of its peak RSS.
This script runs the same two rows (same settings, imports and timed steps, through
``peer_step.measure``) under four settings of the C allocator, each row and setting in
its own process, rounds interleaved:

* ``default``: glibc's malloc as it comes (freed blocks stay in its heap);
* ``THP``: ``THP_MEM_ALLOC_ENABLE=1``, PyTorch's own switch that aligns CPU tensors of
  2 MB and more to 2 MB and asks the kernel for transparent huge pages for them;
* ``mmap 1 MB``: ``MALLOC_MMAP_THRESHOLD_=1048576``, every block of 1 MB or more its own
  mapping, handed back to the kernel when freed (so RSS follows live tensors) and
  faulted in again, page by page, when next allocated;
* ``mmap 16 MB``: the same for blocks of 16 MB and more only (a ViT-S step's largest
  activations, its MLP's hidden layer), fixed: glibc's own threshold starts at 128 KiB
  and rises to the largest block freed so far, so without it these stay in the heap too.

A sampling thread reads the process's RSS and glibc's ``mallinfo2`` every few
milliseconds through the whole run (models built, untimed and timed steps, and the
matmul peak ``peer_step`` measures after them); the sample with the highest RSS gives the heap's
split at the peak: bytes in use, free bytes glibc keeps inside its heap, mapped blocks.
All the settings are environment variables read when the process starts, so they are
the user's to set (``docs/troubleshooting.md`` says how), not the library's.

    .venv-bench/bin/python benchmarks/heap.py [--repeats 2] [--steps 8]

Writes ``benchmarks/results/heap.{csv,md}`` and ``heap_runs.csv`` (every run).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from common import GB, in_child, rss_gb

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
OURS = "usjepa SALT, one pass, bf16 teacher, selective checkpointing"
PEER = "stable-pretraining SALT"
SETTINGS: dict[str, dict[str, str]] = {
    "default": {},
    "THP": {"THP_MEM_ALLOC_ENABLE": "1"},
    "mmap 16 MB": {"MALLOC_MMAP_THRESHOLD_": str(16 * 2**20)},
    "mmap 1 MB": {"MALLOC_MMAP_THRESHOLD_": "1048576"},
}


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
        ).split()
    ]


class HeapSampler(threading.Thread):
    """Reads RSS and ``mallinfo2`` every ``interval`` seconds until stopped; keeps the
    sample with the highest RSS."""

    def __init__(self, interval: float = 0.005) -> None:
        super().__init__(daemon=True)
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        self._mallinfo = libc.mallinfo2
        self.interval = interval
        self.peak: dict[str, float] = {"rss_gb": 0.0}
        self._done = threading.Event()

    def run(self) -> None:
        """Sample until :meth:`stop`."""
        while not self._done.is_set():
            rss = rss_gb()
            if rss > self.peak["rss_gb"]:
                info = self._mallinfo()
                self.peak = {
                    "rss_gb": rss,
                    "heap_in_use_gb": info.uordblks / GB,
                    "heap_free_gb": info.fordblks / GB,
                    "mapped_blocks_gb": info.hblkhd / GB,
                }
            time.sleep(self.interval)

    def stop(self) -> dict[str, float]:
        """End the sampling; the sample with the highest RSS."""
        self._done.set()
        self.join()
        return self.peak


def child(row: str, steps: int, warmup: int) -> dict[str, Any]:
    """One run of ``row`` under this process's allocator settings, sampled."""
    import peer_step

    sampler = HeapSampler()
    sampler.start()
    figures = peer_step.measure(row, steps, threads=2, batch=16, memory=False, warmup=warmup)
    peak = sampler.stop()
    keep = ("images_per_s", "peak_rss_gb", "built_rss_gb", "timed_page_faults_per_step")
    return {**{k: figures[k] for k in keep}, **{f"at_peak_{k}": v for k, v in peak.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="rounds (interleaved)")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--row", default=None, help=argparse.SUPPRESS)  # child process
    args = parser.parse_args()
    if args.row is not None:
        print(json.dumps(child(args.row, args.steps, args.warmup)))
        return
    try:
        import stable_pretraining  # noqa: F401
    except ImportError as err:
        sys.exit(f"heap: {err.name} is not installed; run `make bench-peers` (.venv-bench)")
    import pandas as pd

    runs = []
    for round_ in range(args.repeats):
        for setting, env in SETTINGS.items():
            for row in (OURS, PEER):
                figures = in_child(__file__, env=env, row=row, steps=args.steps, warmup=args.warmup)
                runs.append({"row": row, "setting": setting, "round": round_, **figures})
                print(runs[-1], flush=True)
    frame = pd.DataFrame(runs)
    frame.to_csv(OUT / "heap_runs.csv", index=False)
    spread = frame.groupby(["row", "setting"]).images_per_s.agg(["min", "max"])
    table = frame.groupby(["row", "setting"], sort=False).median(numeric_only=True)
    table = table.drop(columns="round").reset_index()
    base = table[table.setting == "default"].set_index("row")
    peer = table[table.row == PEER].set_index("setting")
    table["speed_vs_default"] = [
        r.images_per_s / base.loc[r.row, "images_per_s"] for _, r in table.iterrows()
    ]
    table["rss_vs_peer"] = [
        r.peak_rss_gb / peer.loc[r.setting, "peak_rss_gb"] for _, r in table.iterrows()
    ]
    table.to_csv(OUT / "heap.csv", index=False)
    lines = [
        "# Peak RSS, the C allocator's heap, and allocator settings",
        "",
        f"The SALT step of `peer_step.py` (ViT-S/16, batch 16, 2 threads, {args.warmup} "
        f"untimed then {args.steps} timed steps), ours with the bf16 teacher and selective "
        f"checkpointing beside stable-pretraining's fp32 step, each row and setting in its "
        f"own process with the same imports; {args.repeats} interleaved rounds, medians "
        "(every run in `heap_runs.csv`). At the peak: RSS and glibc's `mallinfo2` sampled "
        "every 5 ms through the whole run (models built, steps, the matmul peak measured after "
        "them), the sample with the highest RSS (heap in use: "
        "bytes handed out; heap free: bytes glibc keeps in its heap after they were freed, "
        "still resident; mapped blocks: blocks given their own mapping). Settings: "
        "`default` (none), `THP` (`THP_MEM_ALLOC_ENABLE=1`), `mmap 1 MB` "
        "(`MALLOC_MMAP_THRESHOLD_=1048576`), `mmap 16 MB` (`MALLOC_MMAP_THRESHOLD_=16777216`). "
        "GB: 10^9 bytes, as in `peer_step.md`. Command: `.venv-bench/bin/python "
        "benchmarks/heap.py`.",
        "",
        "| row | setting | images/s | images/s, range | speed vs default | peak RSS (GB) | "
        "RSS vs peer, same setting | RSS, models built (GB) | heap in use at peak (GB) | "
        "heap free at peak (GB) | mapped blocks at peak (GB) | page faults / timed step |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in table.iterrows():
        lo, hi = spread.loc[(r.row, r.setting)]
        lines.append(
            f"| {r.row} | {r.setting} | {r.images_per_s:.2f} | {lo:.2f}-{hi:.2f} | "
            f"{r.speed_vs_default:.2f}x | {r.peak_rss_gb:.2f} | {r.rss_vs_peer:.2f}x | "
            f"{r.built_rss_gb:.2f} | {r.at_peak_heap_in_use_gb:.2f} | "
            f"{r.at_peak_heap_free_gb:.2f} | {r.at_peak_mapped_blocks_gb:.2f} | "
            f"{r.timed_page_faults_per_step:,.0f} |"
        )
    (OUT / "heap.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
