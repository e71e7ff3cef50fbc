"""The networks a pretraining method is built from, as contracts.

A method asks for what it uses, not for our classes: any ``nn.Module`` with these
attributes and this call fits (``isinstance`` checks them at run time). ``ViTEncoder``,
the zoo's encoders and ``JEPAPredictor`` meet them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from torch import Tensor, nn

from usjepa.models.input_spec import InputSpec


@runtime_checkable
class TokenEncoder(Protocol):
    """An encoder that maps images to tokens: what a frozen teacher must be.

    Attributes:
        embed_dim: token width ``D``.
        num_prefix_tokens: tokens before the patch tokens (a class token: 1).
        input_spec: the input its weights expect, or ``None`` when unknown.
    """

    embed_dim: int
    num_prefix_tokens: int
    input_spec: InputSpec | None

    def __call__(self, images: Tensor) -> Tensor:
        """``[B, C, H, W]`` images -> ``[B, num_prefix_tokens + N, D]`` tokens."""
        ...

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]:
        """Its parameters (an ``nn.Module``'s)."""
        ...


@runtime_checkable
class ContextEncoder(Protocol):
    """An encoder that can encode a subset of its patch tokens: what a JEPA student or an
    MAE encoder must be.

    Attributes:
        embed_dim: token width ``D``.
        num_prefix_tokens: tokens before the patch tokens.
        grid_size: patches per side (``img_size // patch_size``).
        patch_size: patch side in pixels.
        input_spec: the input its weights expect, or ``None`` when unknown.
    """

    embed_dim: int
    num_prefix_tokens: int
    grid_size: int
    patch_size: int
    input_spec: InputSpec | None

    def __call__(self, images: Tensor, keep: Tensor | None = None) -> Tensor:
        """``[B, C, H, W]`` images -> ``[B, num_prefix_tokens + K, D]`` tokens of the
        patches ``keep [B, K]`` (padded with ``-1``, kept out of attention), or of all."""
        ...

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]:
        """Its parameters (an ``nn.Module``'s)."""
        ...


@runtime_checkable
class Predictor(Protocol):
    """A JEPA predictor: context tokens and index sets in, target predictions out.

    Attributes:
        grid_size: patches per side of the student's grid.
        in_dim: the student's token width.
        out_dim: the target width.
    """

    grid_size: int
    in_dim: int
    out_dim: int

    def __call__(self, context: Tensor, context_idx: Tensor, target_idx: Tensor) -> Tensor:
        """``context [B, K, in_dim]`` at ``context_idx [B, K]`` -> predictions
        ``[B, M, T, out_dim]`` at ``target_idx [B, M, T]``."""
        ...

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]:
        """Its parameters (an ``nn.Module``'s)."""
        ...


def require(network: object, contract: type, role: str) -> None:
    """Raise a ``TypeError`` naming what ``network`` lacks to serve as ``role``.

    Args:
        network: the object given.
        contract: one of the protocols above.
        role: its argument's name, for the message.
    """
    if not isinstance(network, nn.Module):
        raise TypeError(f"{role} must be an nn.Module, got {type(network).__name__}")
    if isinstance(network, contract):
        return
    missing = sorted(n for n in contract.__annotations__ if not hasattr(network, n))
    raise TypeError(
        f"{role} ({type(network).__name__}) does not meet the {contract.__name__} contract: "
        f"it lacks {', '.join(missing) or 'a matching call'} (usjepa.models.contracts)"
    )
