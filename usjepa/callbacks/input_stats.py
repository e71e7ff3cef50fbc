"""Hand the DataModule's input statistics to the module once the data has measured them."""

from __future__ import annotations

from typing import Any

import lightning as L


class InputStatsFromData(L.Callback):
    """At ``setup``, after the DataModule's own ``setup`` (which measures the corpus's
    mean and std unless its config fixes them), call the module's
    ``set_input_stats(mean, std)`` with them. Modules without that method (those with no
    frozen teacher) and DataModules without statistics are left alone. ``usjepa pretrain``
    always adds it."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Pass the statistics on."""
        data: Any = getattr(trainer, "datamodule", None)  # set by Trainer.fit
        target = getattr(pl_module, "set_input_stats", None)
        mean, std = getattr(data, "mean", None), getattr(data, "std", None)
        if callable(target) and mean is not None and std is not None:
            target(float(mean), float(std))
