"""Data: manifests, datasets, DataModules and the synthetic B-mode generator."""

from usjepa.data.batches import MaskCollator
from usjepa.data.corpus import CorpusDataModule, CorpusDataset
from usjepa.data.tasks import ProbeDataModule

__all__ = ["CorpusDataModule", "CorpusDataset", "MaskCollator", "ProbeDataModule"]
