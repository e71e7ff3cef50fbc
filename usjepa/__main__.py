"""``python -m usjepa`` and the ``usjepa`` command: :mod:`usjepa.cli`, started after the
process defaults that must be in place before PyTorch is imported.

Process defaults (each only where the user's environment does not set it already):

* ``THP_MEM_ALLOC_ENABLE=1``: PyTorch asks the kernel for transparent huge pages for CPU
  tensors of 2 MB and more. PyTorch reads it at its first CPU allocation, so it cannot be
  set later, from Python. On a 2-core CPU it lowered a ViT-S/16 SALT step's peak resident
  memory from 2.48 to 2.33 GB at the same speed (``benchmarks/results/heap.md``); on a GPU
  it touches only host-side tensors. ``THP_MEM_ALLOC_ENABLE=0`` turns it off.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

#: environment variables the command sets when the user has not
PROCESS_DEFAULTS = {"THP_MEM_ALLOC_ENABLE": "1"}


def apply_process_defaults(environ: MutableMapping[str, str] = os.environ) -> None:
    """Set each of :data:`PROCESS_DEFAULTS` the user's ``environ`` leaves unset. Effective
    only before ``torch`` is imported; DDP's worker processes inherit the environment."""
    for name, value in PROCESS_DEFAULTS.items():
        environ.setdefault(name, value)


def run() -> None:
    """The ``usjepa`` command."""
    apply_process_defaults()
    from usjepa.cli import main

    main()


if __name__ == "__main__":
    run()
