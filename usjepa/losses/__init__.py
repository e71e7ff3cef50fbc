"""Loss functions (pure torch)."""

from usjepa.losses.latent import LossKind, latent_loss

__all__ = ["LossKind", "latent_loss"]
