"""Lightning callbacks."""

from usjepa.callbacks.export import ExportEncoder
from usjepa.callbacks.monitors import (
    CollapseMonitor,
    MaskImages,
    OnlineProbe,
    ThroughputMonitor,
)
from usjepa.callbacks.preemption import CheckpointOnSigterm

__all__ = [
    "CheckpointOnSigterm",
    "CollapseMonitor",
    "ExportEncoder",
    "MaskImages",
    "OnlineProbe",
    "ThroughputMonitor",
]
