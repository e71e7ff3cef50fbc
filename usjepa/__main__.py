"""``python -m usjepa``: the command line (:mod:`usjepa.cli`)."""

from usjepa.cli import main

main()
