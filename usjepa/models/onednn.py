"""Linear layers through oneDNN on the CPU.

On a CPU, ``F.linear`` runs its matmuls through torch's BLAS (MKL in the x86 wheels). torch
also ships oneDNN, whose kernels ran the forward matmul and the input gradient of a ViT's
linear layers faster than MKL on the project's AMD EPYC machine, while the weight
gradient was no faster (``benchmarks/results/fast_paths.md``). :func:`linear` is
``F.linear`` with those two products taken from oneDNN (``mkldnn::_linear_pointwise``,
the op torch's own compiler emits for CPU linear layers) and the weight gradient left to
torch. The products are the same, in the same dtype; results agree with ``F.linear`` up
to float rounding (``tests/models/test_onednn.py``).

It applies to CPU tensors in float32 or bfloat16 (the latter where oneDNN has bf16
kernels) outside autocast and outside ``torch.compile``; everything else, CUDA included,
goes to ``F.linear`` unchanged. :func:`use_onednn` turns a model's ``nn.Linear`` layers
into :class:`OneDNNLinear` in place (same parameters, same state-dict keys).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_OP: Any = (
    getattr(torch.ops.mkldnn, "_linear_pointwise", None)
    if torch.backends.mkldnn.is_available()
    else None
)
_BF16 = _OP is not None and bool(
    getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)()
)


def available() -> bool:
    """Whether this torch build has the oneDNN linear op."""
    return _OP is not None


def applies(x: Tensor, weight: Tensor) -> bool:
    """Whether :func:`linear` takes ``x @ weight.T`` from oneDNN."""
    if _OP is None or x.device.type != "cpu" or weight.device.type != "cpu":
        return False
    if x.dtype != weight.dtype or x.dim() < 2 or weight.dim() != 2:
        return False
    if x.dtype is not torch.float32 and not (x.dtype is torch.bfloat16 and _BF16):
        return False
    return not (torch.is_autocast_enabled("cpu") or torch.compiler.is_compiling())


def _product(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    return _OP(x, weight, bias, "none", [None], "none")  # type: ignore[no-any-return]


def input_grad(grad: Tensor, weight: Tensor) -> Tensor:
    """``grad @ weight``, the input gradient of a linear layer, from oneDNN where
    :func:`applies` holds."""
    if applies(grad, weight):
        return _product(grad, weight.t(), None)
    return grad.matmul(weight)


class _Linear(torch.autograd.Function):
    """``F.linear`` with the forward and input-gradient products from oneDNN."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None
    ) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _product(x, weight, bias)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        flat = grad.reshape(-1, grad.shape[-1])
        grad_x = input_grad(grad, weight) if need_x else None
        grad_w = flat.t().mm(x.reshape(-1, x.shape[-1])) if need_w else None
        grad_b = flat.sum(0) if ctx.has_bias and need_b else None
        return grad_x, grad_w, grad_b


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear(x, weight, bias)``, with oneDNN's products where :func:`applies`."""
    if not applies(x, weight) or (bias is not None and bias.dtype != weight.dtype):
        return F.linear(x, weight, bias)
    if torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (x, weight, bias)
    ):
        return _Linear.apply(x, weight, bias)  # type: ignore[no-any-return]
    return _product(x, weight, bias)


class OneDNNLinear(nn.Linear):
    """``nn.Linear`` whose forward is :func:`linear` (same parameters and keys)."""

    def forward(self, input: Tensor) -> Tensor:
        """``input @ weight.T + bias``, through :func:`linear`."""
        return linear(input, self.weight, self.bias)


def use_onednn(module: nn.Module) -> int:
    """Turn every plain ``nn.Linear`` in ``module`` into :class:`OneDNNLinear`, in place;
    return how many. Subclasses of ``nn.Linear`` are left as they are."""
    count = 0
    for sub in module.modules():
        if type(sub) is nn.Linear:
            sub.__class__ = OneDNNLinear
            count += 1
    return count
