"""Hand the C allocator's freed heap pages back to the kernel every few training steps."""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback


def _glibc_trim() -> Any:
    """The C library's ``malloc_trim`` (glibc), or None where it has none."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


class ReleaseHostMemory(Callback):
    """Call glibc's ``malloc_trim(0)`` after every ``every_n_steps``-th training batch.

    On the CPU, glibc keeps the blocks PyTorch frees in its heap, resident; steps whose
    token counts differ (every mask draw) leave ever new holes, so a CPU run's resident
    memory creeps up for many steps (``benchmarks/results/long_run_rss.md``). Trimming
    hands the free pages back; the next step faults in again the ones it reuses, which
    costs time in proportion to how often it runs. Off the CPU, or without glibc, it
    does nothing.

    Args:
        every_n_steps: trim after every this many training batches (1: every batch).
    """

    def __init__(self, every_n_steps: int = 10) -> None:
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps={every_n_steps}; give 1 or more")
        self.every_n_steps = every_n_steps
        self.trims = 0
        self._trim = _glibc_trim()

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: object,
        batch: object,
        batch_idx: int,
    ) -> None:
        """Trim after every ``every_n_steps``-th batch of a run on the CPU."""
        if pl_module.device.type == "cpu" and (batch_idx + 1) % self.every_n_steps == 0:
            self.release()

    def release(self) -> bool:
        """Trim now; False where the C library has no ``malloc_trim``."""
        if self._trim is None:
            return False
        self._trim(0)
        self.trims += 1
        return True
