"""Lightning callbacks."""

from usjepa.callbacks.export import ExportEncoder
from usjepa.callbacks.preemption import CheckpointOnSigterm

__all__ = ["CheckpointOnSigterm", "ExportEncoder"]
