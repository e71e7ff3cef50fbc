"""Benchmarks, grouped by the question they answer (see benchmarks/README.md). Run a script
from the repository root as a module: ``python -m benchmarks.perf.step_suite``."""
