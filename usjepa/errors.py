"""User errors and how the command line reports them.

A :class:`UsjepaError` is a mistake the user can fix (a path, a config value, a file). Its
message says what is wrong, where, and the fix. The command line prints that message as
one last line and exits 1; the traceback is shown only with ``--debug`` or
``USJEPA_DEBUG=1``. Errors raised deep inside a config parse (jsonargparse wraps them
two or three times) are found again by walking the exception chain.
"""

from __future__ import annotations

import difflib
import errno
import importlib
import inspect
import os
import re

DEBUG_ENV = "USJEPA_DEBUG"


class UsjepaError(Exception):
    """An error the user can fix; the message names the thing and the fix."""


class ConfigError(UsjepaError, ValueError):
    """A config value that cannot work (a size, a name, a combination)."""


def debug_requested(argv: list[str]) -> tuple[bool, list[str]]:
    """``(debug?, argv without --debug)``: the flag or ``USJEPA_DEBUG=1``."""
    env = os.environ.get(DEBUG_ENV, "").lower() not in ("", "0", "false", "no")
    return env or "--debug" in argv, [a for a in argv if a != "--debug"]


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and every exception it was raised from or during, outermost first."""
    out: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        cur = todo.pop(0)
        if cur is None or any(cur is seen for seen in out):
            continue
        out.append(cur)
        todo += [cur.__cause__, cur.__context__]
    return out


_UNKNOWN = re.compile(r"Option '([^']+)' is not accepted")
_CLASS = re.compile(r"Problem with given class_path '([^']+)'")
_KEY = re.compile(r'Parser key "([^"]+)"')
_FLAG = re.compile(r"unrecognized arguments: --(\S+)")
#: where the options of a top-level config group are declared
_GROUPS = {"trainer": "lightning.Trainer"}


def _suggest(class_path: str | None, option: str) -> str:
    """``; did you mean 'x'?`` from the options of ``class_path``'s constructor."""
    if not class_path:
        return ""
    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
        names: list[str] = []
        for klass in inspect.getmro(cls) if inspect.isclass(cls) else [cls]:
            init = getattr(klass, "__init__", None)
            if init is None or init is object.__init__:
                continue
            names += [p for p in inspect.signature(init).parameters if p != "self"]
    except Exception:  # noqa: BLE001 (a suggestion is a courtesy, never a new error)
        return ""
    close = difflib.get_close_matches(option, sorted(set(names)), n=1)
    return f"; did you mean {close[0]!r}?" if close else f"; valid options: {sorted(set(names))}"


def _config_typo(chain: list[BaseException]) -> str | None:
    """A clear line for an unknown config key, with the nearest valid one."""
    text = "\n".join(str(e) for e in chain)
    unknown = _UNKNOWN.search(text)
    if unknown:
        option = unknown.group(1)
        cls = _CLASS.search(text)
        key = _KEY.search(text)
        where = f"{key.group(1)}.init_args" if key else "the config"
        owner = cls.group(1) if cls else None
        of = f" ({owner.rsplit('.', 1)[-1]})" if owner else ""
        return f"unknown config key {where}.{option}{of}{_suggest(owner, option)}"
    flag = _FLAG.search(text)
    if flag:
        group, _, option = flag.group(1).partition(".")
        if "." not in option and group in _GROUPS:
            hint = _suggest(_GROUPS[group], option)
        else:
            hint = "; check the spelling against the config (--help lists the options)"
        return f"unknown option --{flag.group(1)}{hint}"
    return None


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    return "; ".join(lines) if len(lines) <= 3 else lines[-1]


_USAGE = ("the following arguments are required", "invalid choice", "unrecognized arguments")


def _usage_error(chain: list[BaseException]) -> str | None:
    """A command-line slip (missing argument, unknown subcommand or option), as it is."""
    for err in reversed(chain):
        text = _last_line(str(err))
        if any(key in text for key in _USAGE):
            return f"{text.removeprefix('argument cmd: ')}; see --help for the usage"
    return None


def describe(exc: BaseException) -> str:
    """One line for the user: the deepest :class:`UsjepaError` in the chain, a config
    typo with a suggestion, or the innermost error with its type."""
    chain = _chain(exc)
    full = next((e for e in chain if isinstance(e, OSError) and e.errno == errno.ENOSPC), None)
    if full is not None:
        where = f" writing {full.filename}" if full.filename else ""
        return (
            f"no space left on the device{where}; free space or point "
            "trainer.default_root_dir at a larger disk, then resume with --ckpt_path "
            "<run>/checkpoints/last.ckpt (checkpoints already written are complete and kept)"
        )
    ours = [e for e in chain if isinstance(e, UsjepaError)]
    if ours:
        return _last_line(str(ours[-1]))
    typo = _config_typo(chain)
    if typo:
        return typo
    usage = _usage_error(chain)
    if usage:
        return usage
    inner = chain[-1]
    known = (OSError, ValueError, KeyError, TypeError, RuntimeError)
    for err in reversed(chain):
        if isinstance(err, known) and str(err).strip():
            inner = err
            break
    kind = type(inner).__name__
    return f"{kind}: {_last_line(str(inner))} (rerun with --debug for the traceback)"
