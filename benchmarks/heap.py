"""Why peak RSS and peak tensor memory tell different stories on the CPU, and what the
allocator settings do to it, for our SALT step and stable-pretraining's.

``peer_step.py`` finds our SALT step with selective checkpointing at about three
quarters of the peer's peak tensor memory but only about nine tenths of its peak RSS.
This script runs the same two rows (same settings and timed steps, through
``peer_step.measure``) under settings of the C allocator and of the imports, each row
and setting in its own process, rounds interleaved:

* ``default``: glibc's malloc as it comes (freed blocks stay in its heap), every process
  importing ours and both peers, as in ``peer_step.py``;
* ``own imports``: the same allocator, each process importing only its own library, as
  a user of that library alone would (the interpreter and libraries are most of RSS);
* ``THP``: ``THP_MEM_ALLOC_ENABLE=1``, PyTorch's own switch that aligns CPU tensors of
  2 MB and more to 2 MB and asks the kernel for transparent huge pages for them (alone,
  and with own imports);
* ``mmap 16 MB``, ``mmap 4 MB``, ``mmap 1 MB``: ``MALLOC_MMAP_THRESHOLD_`` fixed at that
  size: every block of the size or more its own mapping, handed back to the kernel when
  freed (so RSS follows live tensors) and faulted in again, page by page, when next
  allocated; at 16 MB only a ViT-S step's largest activations (its MLP's hidden layer).
  glibc's own threshold starts at 128 KiB and rises to the largest block freed so far,
  so by default these blocks stay in the heap;
* ``THP + mmap 16 MB, own imports``: both, with own imports.

A sampling thread reads the process's RSS and glibc's ``mallinfo2`` every few
milliseconds through the whole run (models built, untimed and timed steps, and the
matmul peak ``peer_step`` measures after them). It keeps the most heap in use and the
heap's largest extent over all samples (their difference is the fragmentation: freed
blocks kept resident), and the heap's split at the sample with the highest RSS. The
allocator settings are environment variables read when the process starts (PyTorch's at
its first CPU tensor), so a library imported into a running interpreter cannot set
them; ``python -m usjepa`` sets ``THP_MEM_ALLOC_ENABLE=1`` before importing PyTorch
unless the environment sets it (``usjepa.__main__``), and ``docs/troubleshooting.md``
says how to set them elsewhere. This script's children are plain interpreters, so every
setting here is given to both rows alike.

    .venv-bench/bin/python benchmarks/heap.py [--repeats 3] [--steps 8]

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
#: setting -> environment; ``own imports`` is the default allocator with each row
#: importing only its own library (the others import ours and both peers, as
#: ``peer_step.py`` does)
SETTINGS: dict[str, dict[str, str]] = {
    "default": {},
    "own imports": {},
    "THP": {"THP_MEM_ALLOC_ENABLE": "1"},
    "THP, own imports": {"THP_MEM_ALLOC_ENABLE": "1"},
    "THP + mmap 16 MB, own imports": {
        "THP_MEM_ALLOC_ENABLE": "1",
        "MALLOC_MMAP_THRESHOLD_": str(16 * 2**20),
    },
    "mmap 16 MB": {"MALLOC_MMAP_THRESHOLD_": str(16 * 2**20)},
    "mmap 4 MB": {"MALLOC_MMAP_THRESHOLD_": str(4 * 2**20)},
    "mmap 1 MB": {"MALLOC_MMAP_THRESHOLD_": str(2**20)},
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
    sample with the highest RSS, and the most heap ever in use and the heap's largest
    extent (every arena's bytes, in use or free) over all samples.

    The two peaks need not meet: RSS reaches its highest when a step first touches new
    pages at the heap's top, often after the step's tensors have been freed again, so
    the split at the RSS peak understates the heap in use at its own peak."""

    def __init__(self, interval: float = 0.005) -> None:
        super().__init__(daemon=True)
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        self._mallinfo = libc.mallinfo2
        self.interval = interval
        self.peak: dict[str, float] = {"rss_gb": 0.0}
        self.most_in_use_gb = 0.0
        self.largest_heap_gb = 0.0
        self._done = threading.Event()

    def run(self) -> None:
        """Sample until :meth:`stop`."""
        while not self._done.is_set():
            rss = rss_gb()
            info = self._mallinfo()
            self.most_in_use_gb = max(self.most_in_use_gb, info.uordblks / GB)
            self.largest_heap_gb = max(self.largest_heap_gb, info.arena / GB)
            if rss > self.peak["rss_gb"]:
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
        return {
            **self.peak,
            "most_heap_in_use_gb": self.most_in_use_gb,
            "largest_heap_gb": self.largest_heap_gb,
        }


def child(row: str, steps: int, warmup: int, own_imports: bool) -> dict[str, Any]:
    """One run of ``row`` under this process's allocator settings, sampled."""
    import peer_step

    sampler = HeapSampler()
    sampler.start()
    figures = peer_step.measure(
        row, steps, threads=2, batch=16, memory=False, warmup=warmup, own_imports=own_imports
    )
    peak = sampler.stop()
    keep = (
        "images_per_s",
        "gflop_per_image",
        "peak_rss_gb",
        "imported_rss_gb",
        "built_rss_gb",
        "timed_page_faults_per_step",
    )
    most = {k: peak.pop(k) for k in ("most_heap_in_use_gb", "largest_heap_gb")}
    return {
        **{k: figures[k] for k in keep},
        **most,
        **{f"at_peak_{k}": v for k, v in peak.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="rounds (interleaved)")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--row", default=None, help=argparse.SUPPRESS)  # child process
    parser.add_argument("--own-imports", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.row is not None:
        print(json.dumps(child(args.row, args.steps, args.warmup, bool(args.own_imports))))
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
                own = int("own imports" in setting)
                figures = in_child(
                    __file__, env=env, row=row, steps=args.steps, warmup=args.warmup,
                    own_imports=own,
                )  # fmt: skip
                runs.append({"row": row, "setting": setting, "round": round_, **figures})
                print(runs[-1], flush=True)
    frame = pd.DataFrame(runs)
    frame.to_csv(OUT / "heap_runs.csv", index=False)
    spread = frame.groupby(["row", "setting"]).images_per_s.agg(["min", "max"])
    table = frame.groupby(["row", "setting"], sort=False).median(numeric_only=True)
    table = table.drop(columns="round").reset_index()
    base = table[table.setting == "default"].set_index("row")
    peer = table[table.row == PEER].set_index("setting")

    def plain(setting: str) -> str:  # the default allocator under the same imports
        return "own imports" if "own imports" in setting else "default"

    table["speed_vs_default"] = [
        r.images_per_s / base.loc[r.row, "images_per_s"] for _, r in table.iterrows()
    ]
    table["speed_vs_peer"] = [
        r.images_per_s / peer.loc[r.setting, "images_per_s"] for _, r in table.iterrows()
    ]
    table["flops_vs_peer"] = [
        r.gflop_per_image / peer.loc[r.setting, "gflop_per_image"] for _, r in table.iterrows()
    ]
    table["rss_vs_peer"] = [
        r.peak_rss_gb / peer.loc[r.setting, "peak_rss_gb"] for _, r in table.iterrows()
    ]
    table["rss_vs_peer_default"] = [
        r.peak_rss_gb / peer.loc[plain(r.setting), "peak_rss_gb"] for _, r in table.iterrows()
    ]
    table.to_csv(OUT / "heap.csv", index=False)
    settings = "; ".join(
        f"`{name}` ({' '.join(f'`{k}={v}`' for k, v in env.items()) or 'no variable'})"
        for name, env in SETTINGS.items()
    )
    lines = [
        "# Peak RSS, the C allocator's heap, and allocator settings",
        "",
        f"The SALT step of `peer_step.py` (ViT-S/16, batch 16, 2 threads, {args.warmup} "
        f"untimed then {args.steps} timed steps), ours with the bf16 teacher and selective "
        f"checkpointing beside stable-pretraining's fp32 step, each row and setting in its "
        f"own process; {args.repeats} interleaved rounds, medians (every run in "
        "`heap_runs.csv`). Each process imports ours and both peers before building "
        "anything, as `peer_step.py` does, except under the settings marked `own imports`, "
        "where it imports only its own library, as a user of that library alone would. "
        "RSS and glibc's `mallinfo2` are sampled every 5 ms through the whole run (models "
        "built, steps, the matmul peak measured after them). Most heap in use: the most "
        "bytes glibc had handed out at any sample; largest heap: the most bytes its arenas "
        "spanned (in use or free; the difference is fragmentation, freed blocks kept "
        "resident). At the RSS peak: the sample with the highest RSS (heap in use; heap "
        "free, kept after being freed; mapped blocks, given their own mapping). RSS reaches "
        "its peak when a step first touches new pages at the heap's top, often once the "
        "step's tensors are freed again, so the in-use figure at the RSS peak is below the "
        "most in use. Settings: " + settings + ". `RSS vs peer's default`: against the "
        "peer under the default allocator with the same imports. GB: 10^9 bytes, as in "
        "`peer_step.md`. Command: `.venv-bench/bin/python benchmarks/heap.py`.",
        "",
        "| row | setting | images/s | images/s, range | speed vs default | speed vs peer, "
        "same setting | GFLOP / image | FLOPs vs peer | peak RSS (GB) | RSS vs peer, same "
        "setting | RSS vs peer's default | "
        "RSS, imports (GB) | RSS, models built (GB) | most heap in use (GB) | largest heap "
        "(GB) | heap in use at RSS peak (GB) | heap free at RSS peak (GB) | mapped blocks at "
        "RSS peak (GB) | page faults / timed step |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in table.iterrows():
        lo, hi = spread.loc[(r.row, r.setting)]
        lines.append(
            f"| {r.row} | {r.setting} | {r.images_per_s:.2f} | {lo:.2f}-{hi:.2f} | "
            f"{r.speed_vs_default:.2f}x | {r.speed_vs_peer:.2f}x | {r.gflop_per_image:.1f} | "
            f"{r.flops_vs_peer:.2f}x | {r.peak_rss_gb:.2f} | "
            f"{r.rss_vs_peer:.2f}x | {r.rss_vs_peer_default:.2f}x | {r.imported_rss_gb:.2f} | "
            f"{r.built_rss_gb:.2f} | {r.most_heap_in_use_gb:.2f} | {r.largest_heap_gb:.2f} | "
            f"{r.at_peak_heap_in_use_gb:.2f} | {r.at_peak_heap_free_gb:.2f} | "
            f"{r.at_peak_mapped_blocks_gb:.2f} | {r.timed_page_faults_per_step:,.0f} |"
        )
    (OUT / "heap.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
