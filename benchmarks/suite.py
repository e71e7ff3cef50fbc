"""``make bench``: the performance suite, one script after the other, then one summary.

Runs small-corpus speed (``small_corpus.py``), loading from disk (``loading.py``), probe
timings (``probe_speed.py``) and the CPU step suite at three sizes (``step_suite.py``);
the side-by-sides with stable-pretraining and lightly (``peer_step.py``,
``end_to_end.py``) when
``.venv-bench`` exists (``make bench-peers`` builds it); the GPU benchmark
(``gpu_step.py``) when CUDA is present.
Each writes its own CSV and Markdown under ``benchmarks/results/``; this script adds
``suite.json`` (what ran, how long, exit status, result files) and ``suite.md`` (the
Markdown tables of this run, one after the other).

    python benchmarks/suite.py [--only small_corpus,loading]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
BENCH_PY = ROOT / ".venv-bench" / "bin" / "python"
#: the scripts that import the public implementations (the ``[bench]`` extra's venv)
PEERS = ("peer_step", "end_to_end")

#: script -> the Markdown file it writes
SCRIPTS = {
    "small_corpus": "small_corpus.md",
    "loading": "loading.md",
    "probe_speed": "probe_speed.md",
    "step_suite": "step_suite.md",
    "peer_step": "peer_step.md",
    "end_to_end": "end_to_end.md",
    "gpu_step": "gpu_step.md",
}


def available(name: str) -> str | None:
    """Why ``name`` cannot run here, or None."""
    if name in PEERS and not BENCH_PY.exists():
        return "no .venv-bench (run `make bench-peers` once)"
    if name == "gpu_step":
        import torch

        if not torch.cuda.is_available():
            return "no CUDA device"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(SCRIPTS), help="comma-separated scripts")
    args = parser.parse_args()
    report = []
    for name in args.only.split(","):
        if name not in SCRIPTS:
            sys.exit(f"suite: unknown benchmark {name!r}; choose from {', '.join(SCRIPTS)}")
        reason = available(name)
        if reason:
            print(f"[suite] {name}: skipped, {reason}", flush=True)
            report.append({"script": name, "skipped": reason})
            continue
        python = str(BENCH_PY if name in PEERS else sys.executable)
        print(f"[suite] {name} ...", flush=True)
        start = time.perf_counter()
        rc = subprocess.call([python, str(ROOT / "benchmarks" / f"{name}.py")])
        report.append(
            {
                "script": name,
                "seconds": round(time.perf_counter() - start, 1),
                "exit": rc,
                "result": f"benchmarks/results/{SCRIPTS[name]}",
            }  # fmt: skip
        )
    (OUT / "suite.json").write_text(json.dumps(report, indent=1) + "\n")
    parts = ["# Benchmark suite", ""]
    for r in report:
        if "skipped" in r:
            parts += [f"- `{r['script']}`: skipped, {r['skipped']}", ""]
        elif r["exit"] != 0:
            parts += [f"- `{r['script']}`: FAILED (exit {r['exit']}), no table", ""]
        else:
            text = (OUT / SCRIPTS[r["script"]]).read_text()
            parts += ["#" + text if text.startswith("# ") else text, ""]
    (OUT / "suite.md").write_text("\n".join(parts))
    failed = [r["script"] for r in report if r.get("exit", 0) != 0]
    if failed:
        sys.exit(f"suite: {', '.join(failed)} failed; see the output above")


if __name__ == "__main__":
    main()
