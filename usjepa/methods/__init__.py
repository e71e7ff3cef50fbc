"""LightningModules for pretraining."""

from usjepa.methods.base import PretrainModule
from usjepa.methods.ijepa import IJEPAModule
from usjepa.methods.jepa import JEPAModule, SALTModule
from usjepa.methods.mae import MAEModule
from usjepa.methods.optim import WarmupCosine

__all__ = ["IJEPAModule", "JEPAModule", "MAEModule", "PretrainModule", "SALTModule", "WarmupCosine"]
