"""Lightning callbacks."""

from usjepa.callbacks.collapse import CollapseMonitor
from usjepa.callbacks.export import ExportEncoder
from usjepa.callbacks.host_memory import ReleaseHostMemory
from usjepa.callbacks.monitors import MaskImages, ThroughputMonitor
from usjepa.callbacks.online_probe import OnlineProbe
from usjepa.callbacks.preemption import CheckpointOnSigterm

__all__ = [
    "CheckpointOnSigterm",
    "CollapseMonitor",
    "ExportEncoder",
    "MaskImages",
    "OnlineProbe",
    "ReleaseHostMemory",
    "ThroughputMonitor",
]
