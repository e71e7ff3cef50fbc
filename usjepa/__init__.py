"""usjepa: US-JEPA / SALT pretraining and linear-probe evaluation for ultrasound."""

__version__ = "0.1.0"
