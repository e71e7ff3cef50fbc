"""Lightning callbacks."""

from usjepa.callbacks.export import ExportEncoder

__all__ = ["ExportEncoder"]
