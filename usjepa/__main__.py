"""``python -m usjepa`` and the ``usjepa`` command: :mod:`usjepa.cli`."""

from __future__ import annotations


def run() -> None:
    """The ``usjepa`` command."""
    from usjepa.cli import main

    main()


if __name__ == "__main__":
    run()
