"""``make bench``: the quick set, one script after the other, then one summary.

Runs loading from disk (``perf/loading.py``), probe timings (``perf/probe_speed.py``) and
the CPU step suite at ViT-Ti and ViT-S, one round (``perf/step_suite.py``), into
``results/tools/suite/`` (a quick run never replaces a script's full recorded result);
the side-by-sides with stable-pretraining and lightly (``perf/peer_step.py``,
``perf/end_to_end.py``) only with ``--peers`` and a ``.venv-bench`` (``make bench-peers``
builds it); the GPU benchmark (``perf/gpu_step.py``) when CUDA is present, into their own
results folders. Adds ``suite.json`` (what ran, how long, exit status, result files) and
``suite.md`` (the Markdown tables of this run, one after the other, and the total time).

    python -m benchmarks.tools.suite [--only small_corpus,loading]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import record_env, results_dir

ROOT = Path(__file__).resolve().parents[2]
OUT = results_dir(__file__)
BENCH_PY = ROOT / ".venv-bench" / "bin" / "python"
#: the scripts that import the public implementations (the ``[bench]`` extra's venv)
PEERS = ("peer_step", "end_to_end")

#: the quick set and its arguments: it writes into the suite's own folder, so a quick
#: run never replaces a script's full recorded result
QUICK = {
    "loading": ["--out", "{out}/loading"],
    "probe_speed": ["--out", "{out}/probe_speed"],
    "step_suite": ["--sizes", "ViT-Ti/16,ViT-S/16", "--repeats", "1", "--out", "{out}"],
}
#: then the scripts that run only where they can, into their own results folders
SCRIPTS = (*QUICK, "peer_step", "end_to_end", "gpu_step")


def markdown(name: str) -> Path:
    """The Markdown table a script of this suite writes."""
    if name in QUICK:
        return OUT / f"{name}.md"
    return results_dir(str(ROOT / "benchmarks" / "perf" / f"{name}.py")) / f"{name}.md"


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
    parser.add_argument("--only", default=None, help="comma-separated scripts")
    parser.add_argument("--peers", action="store_true", help="add peer_step and end_to_end")
    args = parser.parse_args()
    report = []
    OUT.mkdir(parents=True, exist_ok=True)
    names = list(QUICK) + (list(PEERS) if args.peers else []) + ["gpu_step"]
    for name in args.only.split(",") if args.only else names:
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
        extra = [a.format(out=OUT) for a in QUICK.get(name, [])]
        rc = subprocess.call([python, "-m", f"benchmarks.perf.{name}", *extra], cwd=ROOT)
        report.append(
            {
                "script": name,
                "seconds": round(time.perf_counter() - start, 1),
                "exit": rc,
                "result": str(markdown(name).relative_to(ROOT)),
            }  # fmt: skip
        )
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "suite.json").write_text(json.dumps(report, indent=1) + "\n")
    total = sum(r.get("seconds", 0.0) for r in report)
    parts = [
        "# Benchmark suite",
        "",
        f"`make bench`: {total / 60:.1f} minutes in all; "
        + ", ".join(f"{r['script']} {r['seconds']:.0f} s" for r in report if "seconds" in r)
        + ".",
        "",
    ]
    for r in report:
        if "skipped" in r:
            parts += [f"- `{r['script']}`: skipped, {r['skipped']}", ""]
        elif r["exit"] != 0:
            parts += [f"- `{r['script']}`: FAILED (exit {r['exit']}), no table", ""]
        else:
            text = markdown(r["script"]).read_text()
            parts += ["#" + text if text.startswith("# ") else text, ""]
    record_env(OUT / "suite.md")
    (OUT / "suite.md").write_text("\n".join(parts))
    failed = [r["script"] for r in report if r.get("exit", 0) != 0]
    if failed:
        sys.exit(f"suite: {', '.join(failed)} failed; see the output above")


if __name__ == "__main__":
    main()
