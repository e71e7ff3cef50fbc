"""Lightning callbacks."""

from usjepa.callbacks.collapse import CollapseMonitor
from usjepa.callbacks.export import ExportEncoder
from usjepa.callbacks.input_stats import InputStatsFromData
from usjepa.callbacks.monitors import MaskImages, ThroughputMonitor
from usjepa.callbacks.online_probe import OnlineProbe
from usjepa.callbacks.preemption import CheckpointOnSigterm

__all__ = [
    "CheckpointOnSigterm",
    "CollapseMonitor",
    "ExportEncoder",
    "InputStatsFromData",
    "MaskImages",
    "OnlineProbe",
    "ThroughputMonitor",
]
