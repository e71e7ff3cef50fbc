"""One benchmark row in a process of its own (so peak memory and imports are its own)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any


def in_child(script: str, **flags: Any) -> dict[str, Any]:
    """Run ``python script --flag value ...`` (``flag_name`` becomes ``--flag-name``) and
    return the JSON object the child prints on its last line."""
    command = [sys.executable, script]
    for name, value in flags.items():
        command += [f"--{name.replace('_', '-')}", str(value)]
    out = subprocess.check_output(command, text=True).strip().splitlines()
    return json.loads(out[-1])
