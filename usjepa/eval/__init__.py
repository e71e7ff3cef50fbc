"""Frozen-encoder evaluation: features, linear probes, reports."""

from usjepa.eval.compare import PairedDifference, macro_f1, paired_bootstrap
from usjepa.eval.features import extract_features, pool_tokens
from usjepa.eval.linear_probe import LinearProbeModule
from usjepa.eval.protocol import ProbeProtocol
from usjepa.eval.runner import run_probe

__all__ = [
    "LinearProbeModule",
    "PairedDifference",
    "ProbeProtocol",
    "extract_features",
    "macro_f1",
    "paired_bootstrap",
    "pool_tokens",
    "run_probe",
]
