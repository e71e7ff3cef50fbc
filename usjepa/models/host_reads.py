"""Count the host's reads of tensor data: on a GPU each one is a host-device
synchronisation, which stalls the host until the device has caught up.

Ops whose result the host must see (a Python number, or a shape that depends on values)
are counted as they dispatch, on any device, so a CPU run tells how many a GPU step
would make::

    with HostReads() as reads:
        loss, _ = module.step_loss(batch)
        loss.backward()
    assert reads.count == 0, reads.ops
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

_aten = torch.ops.aten
#: ops that hand tensor data to the host: a number, or an output shape read from values
READS = {
    _aten._local_scalar_dense,  # .item(), bool(t), int(t), float(t)
    _aten.is_nonzero,
    _aten.equal,
    _aten.nonzero,
    _aten.masked_select,
    _aten._unique2,
    _aten.unique_dim,
    _aten.unique_consecutive,
    _aten.repeat_interleave,
}
#: indexing ops that read a boolean index's values to size their output
_BOOL_INDEXED = {_aten.index, _aten.index_put, _aten._index_put_impl_}


class HostReads(TorchDispatchMode):
    """Counts the host reads of tensor data made while active (see the module docstring).

    Attributes:
        ops: the name of each read, in order.
    """

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    @property
    def count(self) -> int:
        """Host reads so far."""
        return len(self.ops)

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        packet = func.overloadpacket
        if packet in READS or (packet in _BOOL_INDEXED and _bool_index(args)):
            self.ops.append(str(packet))
        return func(*args, **(kwargs or {}))


def _bool_index(args: tuple[Any, ...]) -> bool:
    indices = args[1] if len(args) > 1 and isinstance(args[1], (list, tuple)) else ()
    return any(
        isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in indices
    )
