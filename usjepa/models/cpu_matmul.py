"""Linear layers on the CPU through oneDNN rather than the BLAS torch was built with.

torch's x86 wheels run ``F.linear`` and ``torch.mm`` in fp32 through MKL, which keeps its
fastest kernels for Intel CPUs: on an AMD EPYC with AVX-512 (our build machines) the
products of a ViT-S block ran at a median 224 GFLOP/s on 2 threads through MKL and 491
through oneDNN, which torch ships too (``torch.ops.mkldnn._linear_pointwise``, the op
torch's own compiler emits for CPU linear layers; ``benchmarks/results/cpu_matmul.md``).
The blocks' linear layers are most of a ViT training step, so there the step runs about
1.5x faster (``benchmarks/results/peer_step.md``). bf16 products already run in oneDNN.

:func:`linear` is ``F.linear`` for fp32 tensors on the CPU outside autocast, computed by
oneDNN, its backward too (input gradient and weight gradient as oneDNN products); every
other case (GPU, bf16, autocast, a CPU without oneDNN) is ``F.linear`` itself. Results
agree with ``F.linear`` up to float rounding (another summation order). The blocks of
:mod:`usjepa.models.packed` and :mod:`usjepa.models.lean` call it, so every timm block
run through :func:`usjepa.models.tokens.run_blocks` (our encoders, predictor and their
teachers) uses it.

Which library runs is decided once per process (:func:`backend`): the environment
variable ``USJEPA_CPU_MATMUL`` (or :func:`set_backend`) says ``blas`` (the default:
torch's own path, bit for bit), ``onednn``, or ``auto``: time one product of each and
keep oneDNN only when it is at least :data:`AUTO_MARGIN` times faster, so a CPU where
both are alike (Intel's) keeps torch's path.

oneDNN keeps what it builds for each product shape in two caches of 1,024 entries by
default, its own primitive cache and the one of torch's oneDNN bindings (ideep); a JEPA
step's token counts change with every mask draw, so both fill with entries for shapes
never seen again (on the ViT-S/16 SALT step, 24 steps with THP: a peak RSS of 3.21 GB
with both at 1,024, 2.78 with the primitive cache at 32, 2.27 with ideep's at 16 too, at
the same speed). Importing this module caps them at :data:`PRIMITIVE_CACHE` and
:data:`IDEEP_CACHE` unless ``ONEDNN_PRIMITIVE_CACHE_CAPACITY`` and
``LRU_CACHE_CAPACITY`` are set (both are read when the first product is built, so this
holds when usjepa is imported before anything runs on oneDNN; it applies to torch's other
oneDNN ops, bf16 products and convolutions, too). It also registers the oneDNN op's
FLOPs with ``torch.utils.flop_counter``.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from usjepa.errors import ConfigError

#: the modes :func:`set_backend` and ``USJEPA_CPU_MATMUL`` take
MODES = ("auto", "onednn", "blas")
#: ``auto`` takes oneDNN when it is at least this many times faster than torch's BLAS
AUTO_MARGIN = 1.25
#: the oneDNN primitive cache's capacity set on import unless the environment sets one
PRIMITIVE_CACHE = 32
#: the capacity of the cache of torch's oneDNN bindings (ideep), set likewise
IDEEP_CACHE = 16

os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(PRIMITIVE_CACHE))
os.environ.setdefault("LRU_CACHE_CAPACITY", str(IDEEP_CACHE))


def _register_flops() -> None:
    """Teach ``torch.utils.flop_counter`` the oneDNN linear op (torch counts only the
    aten products), so FLOP counts and MFU do not depend on the backend."""
    if not hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        return
    from torch.utils.flop_counter import flop_registry, register_flop_formula

    target = torch.ops.mkldnn._linear_pointwise
    if target in flop_registry:
        return

    @register_flop_formula(target)
    def _flops(x_shape: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
        return 2 * math.prod(out_shape) * x_shape[-1]  # every output sums x_shape[-1] products


_register_flops()

_mode: str | None = None  # set_backend's mode; None: the environment's
_resolved: str | None = None  # "onednn" or "blas", once decided


def set_backend(mode: str | None) -> None:
    """Choose the library for fp32 linear layers on the CPU: ``onednn``, ``blas`` (torch's
    own) or ``auto``; ``None`` returns to ``USJEPA_CPU_MATMUL`` (default ``blas``).
    Takes effect at the next call."""
    global _mode, _resolved
    if mode is not None:
        _check(mode, "set_backend")
    _mode, _resolved = mode, None


def backend() -> str:
    """The library fp32 CPU linear layers run in now: ``onednn`` or ``blas``."""
    global _resolved
    if _resolved is None:
        mode = _mode if _mode is not None else os.environ.get("USJEPA_CPU_MATMUL", "blas")
        _check(mode, "USJEPA_CPU_MATMUL")
        if mode == "blas" or not available():
            _resolved = "blas"
        elif mode == "onednn":
            _resolved = "onednn"
        else:
            _resolved = "onednn" if onednn_speedup() >= AUTO_MARGIN else "blas"
    return _resolved


def _check(mode: str, source: str) -> None:
    if mode not in MODES:
        raise ConfigError(f"{source}={mode!r} is not a CPU matmul mode; choose one of {MODES}")


def available() -> bool:
    """Whether this torch build can run linear layers through oneDNN on the CPU."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def onednn_speedup(rows: int = 1024, width: int = 384, reps: int = 5) -> float:
    """How many times faster oneDNN runs a ``[rows, width] x [width, 4 width]`` fp32
    product than ``torch.mm`` on this CPU with torch's current threads (best of ``reps``
    each, after a warm-up)."""
    x = torch.randn(rows, width)
    w = torch.randn(4 * width, width)

    def best(fn: Any) -> float:
        fn()
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    return best(lambda: x.mm(w.t())) / best(lambda: _product(x, w))


def _product(x: Tensor, w: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x @ w.T + bias`` by oneDNN, ``x [M, K]`` and ``w [N, K]`` (either may be a
    transposed view)."""
    return torch.ops.mkldnn._linear_pointwise(x, w, bias, "none", [None], "none")


def uses_onednn(x: Tensor, weight: Tensor | None = None) -> bool:
    """Whether :func:`linear` runs ``x`` (and ``weight``, when given) through oneDNN."""
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and (weight is None or weight.dtype == torch.float32)
        and x.dim() >= 2
        and x.numel() > 0
        and not torch.is_autocast_enabled("cpu")
        and backend() == "onednn"
    )


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear(x, weight, bias)``, through oneDNN where :func:`uses_onednn` holds."""
    if not uses_onednn(x, weight):
        return F.linear(x, weight, bias)
    needs_grad = x.requires_grad or weight.requires_grad
    if torch.is_grad_enabled() and (needs_grad or (bias is not None and bias.requires_grad)):
        return _OneDNNLinear.apply(x, weight, bias)
    return _forward(x, weight, bias)


def run_linear(layer: nn.Module, x: Tensor) -> Tensor:
    """``layer(x)``; a plain ``nn.Linear`` through :func:`linear`."""
    if type(layer) is nn.Linear:
        return linear(x, layer.weight, layer.bias)
    return layer(x)


def _forward(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    out = _product(x.reshape(-1, x.shape[-1]), weight, bias)
    return out.view(*x.shape[:-1], weight.shape[0])


def linear_grads(
    grad: Tensor,
    inp: Tensor,
    weight: Tensor,
    bias_dtype: torch.dtype | None,
    needs: tuple[bool, bool, bool],
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """Gradients of ``F.linear(inp, weight, bias)`` for the output gradient ``grad``:
    (input, weight, bias) where ``needs`` asks for them, ``None`` elsewhere and for the
    bias when ``bias_dtype`` is ``None`` (no bias). Computed in ``grad``'s dtype (the one
    the forward product ran in) and returned in the parameters' dtypes; through oneDNN
    where :func:`uses_onednn` holds for ``grad``."""
    flat_grad = grad.reshape(-1, grad.shape[-1])
    onednn = uses_onednn(grad, weight)
    grad_in = grad_w = grad_b = None
    if needs[0]:
        w = weight.to(grad.dtype)
        if onednn:  # grad @ w, as a linear layer whose weight is w.T
            grad_in = _product(flat_grad, w.t()).view(*grad.shape[:-1], w.shape[1])
        else:
            grad_in = grad.matmul(w)
    if needs[1]:
        flat_inp = inp.reshape(-1, inp.shape[-1]).to(grad.dtype)
        if onednn:  # grad.T @ inp
            grad_w = _product(flat_grad.t(), flat_inp.t())
        else:
            grad_w = flat_grad.t().mm(flat_inp)
        grad_w = grad_w.to(weight.dtype)
    if bias_dtype is not None and needs[2]:
        grad_b = flat_grad.sum(0).to(bias_dtype)
    return grad_in, grad_w, grad_b


class _OneDNNLinear(torch.autograd.Function):
    """``F.linear`` whose forward and backward products run in oneDNN; keeps what
    ``F.linear`` keeps (the input and the weight)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None
    ) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.bias_dtype = None if bias is None else bias.dtype
        return _forward(x, weight, bias)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        n = ctx.needs_input_grad
        return linear_grads(grad.contiguous(), x, weight, ctx.bias_dtype, (n[0], n[1], n[2]))
