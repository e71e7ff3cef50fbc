"""A transformer block's linear layers with the pointwise work before them recomputed in
the backward pass instead of kept.

Autograd keeps, for ``fc2(gelu(h))``, both ``h`` (for GELU's backward) and ``gelu(h)``
(for ``fc2``'s weight gradient); for ``qkv(norm1(x))`` both ``x`` (for the norm's
backward) and ``norm1(x)``. Those kept copies are three of the sixteen token-widths a
ViT block keeps per token (``D`` each for the two norms' outputs, ``4D`` for the GELU
output). :func:`norm_linear` and :func:`gelu_linear` keep only the input of the pointwise
op and rebuild its output in the backward pass, a pass over memory and no matmul, so the
block keeps ten widths instead of sixteen and runs the same matmuls. Gradients agree with
autograd's up to float rounding (the same ops, in the same dtypes; ``tests/models``).

Under autocast the linear layer runs in the autocast dtype, as ``F.linear`` would, and
its gradients come back in the parameters' dtypes.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import LayerNorm as TimmLayerNorm
from torch import Tensor, nn

from usjepa.models.cpu_matmul import linear, linear_grads, run_linear

_aten = torch.ops.aten


class _NormLinear(torch.autograd.Function):
    """``F.linear(layer_norm(x), weight, bias)`` keeping only ``x`` (and the parameters)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: Tensor,
        norm_w: Tensor | None,
        norm_b: Tensor | None,
        eps: float,
        weight: Tensor,
        bias: Tensor | None,
    ) -> Tensor:
        normed = _aten.native_layer_norm(x, [x.shape[-1]], norm_w, norm_b, eps)[0]
        ctx.save_for_backward(x, norm_w, norm_b, weight)
        ctx.eps, ctx.bias_dtype = eps, None if bias is None else bias.dtype
        return linear(normed, weight, bias)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, norm_w, norm_b, weight = ctx.saved_tensors
        shape = [x.shape[-1]]
        # the norm's output and statistics again: one pass over x, no matmul
        normed, mean, rstd = _aten.native_layer_norm(x, shape, norm_w, norm_b, ctx.eps)
        n = ctx.needs_input_grad
        need_normed = n[0] or n[1] or n[2]
        grad_normed, grad_w, grad_b = linear_grads(
            grad, normed, weight, ctx.bias_dtype, (need_normed, n[4], n[5])
        )
        grad_x = grad_nw = grad_nb = None
        if grad_normed is not None:
            grad_x, grad_nw, grad_nb = _aten.native_layer_norm_backward(
                grad_normed.to(x.dtype), x, shape, mean, rstd, norm_w, norm_b,
                [n[0], n[1] and norm_w is not None, n[2] and norm_b is not None],
            )  # fmt: skip
        return grad_x, grad_nw, grad_nb, None, grad_w, grad_b


class _GeluLinear(torch.autograd.Function):
    """``F.linear(gelu(h), weight, bias)`` keeping ``h`` only."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, h: Tensor, approximate: str, weight: Tensor, bias: Tensor | None
    ) -> Tensor:
        ctx.save_for_backward(h, weight)
        ctx.approximate, ctx.bias_dtype = approximate, None if bias is None else bias.dtype
        return linear(F.gelu(h, approximate=approximate), weight, bias)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        h, weight = ctx.saved_tensors
        n = ctx.needs_input_grad
        act = F.gelu(h, approximate=ctx.approximate)
        grad_act, grad_w, grad_b = linear_grads(
            grad, act, weight, ctx.bias_dtype, (n[0], n[2], n[3])
        )
        grad_h = None
        if grad_act is not None:
            grad_h = _aten.gelu_backward(grad_act.to(h.dtype), h, approximate=ctx.approximate)
        return grad_h, None, grad_w, grad_b


def norm_linear(norm: nn.Module, linear: nn.Module, x: Tensor, lean: bool) -> Tensor:
    """``linear(norm(x))``; ``lean`` (with a ``LayerNorm`` and a ``Linear``) keeps ``x``
    for the backward pass and not ``norm(x)``."""
    if not (lean and torch.is_grad_enabled() and leanable_norm(norm, linear)):
        return run_linear(linear, norm(x))
    ln: Any = norm
    return _NormLinear.apply(x, ln.weight, ln.bias, ln.eps, linear.weight, linear.bias)


def gelu_linear(act: nn.Module, linear: nn.Module, h: Tensor, lean: bool) -> Tensor:
    """``linear(act(h))``; ``lean`` (with a ``GELU`` and a ``Linear``) keeps ``h`` for the
    backward pass and not ``act(h)``."""
    if not (lean and torch.is_grad_enabled() and type(act) is nn.GELU):
        return run_linear(linear, act(h))
    gelu: Any = act
    return _GeluLinear.apply(h, gelu.approximate, linear.weight, linear.bias)


def leanable_norm(norm: nn.Module, linear: nn.Module) -> bool:
    """Whether :func:`norm_linear` can rebuild ``norm``'s output: torch's LayerNorm, or
    timm's (a subclass) when it runs ``F.layer_norm`` (not timm's fast-norm path, which
    under autocast normalises in the low dtype), over the last dimension."""
    return (
        type(norm) in _LAYER_NORMS
        and not getattr(norm, "_fast_norm", False)
        and len(getattr(norm, "normalized_shape", ())) == 1
        and type(linear) is nn.Linear
    )


_LAYER_NORMS = (nn.LayerNorm, TimmLayerNorm)
