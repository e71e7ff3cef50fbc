"""LightningModules for pretraining."""

from usjepa.methods.base import PretrainModule
from usjepa.methods.jepa import JEPAModule, SALTModule
from usjepa.methods.mae import MAEModule

__all__ = ["JEPAModule", "MAEModule", "PretrainModule", "SALTModule"]
