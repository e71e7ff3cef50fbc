"""Patient privacy for corpora and tasks built from hospital exports.

Two things carry a patient's identity out of a raw export: the paths (a folder named
after the patient, a file named after the study) and the pixels outside the scan region
(the header with the name, ID and date burned in). :class:`Pseudonyms` replaces every
identifier taken from a path by a keyed pseudonym, HMAC-SHA256 under a per-corpus secret;
``usjepa data build`` blanks the pixels outside the scan region (see its
``blank_outside``).

The secret is a random key in a file kept beside the raw data (by default
``RAW/../.usjepa-secret``), never in the corpus: with it, the same patient maps to the same
pseudonym on every rebuild, so grouping and resumed builds work; without it, nobody can
test a guessed name against a pseudonym. The corpus records only the key's fingerprint
(``OUT/privacy.json``), so that a dataset pseudonymised under another key is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

from usjepa.errors import UsjepaError

SECRET_NAME = ".usjepa-secret"
RECORD_NAME = "privacy.json"


class PrivacyError(UsjepaError, ValueError):
    """A pseudonym secret that is missing, unreadable, misplaced or not the corpus's."""


def default_secret_path(raw_root: str | Path) -> Path:
    """Where a dataset's secret lives unless given: beside its raw folder."""
    return Path(raw_root).resolve().parent / SECRET_NAME


def load_secret(path: str | Path, out_root: str | Path | None = None, create: bool = True) -> bytes:
    """The key in ``path``, made (32 random bytes, owner-only) when absent and ``create``.

    Raises:
        PrivacyError: the file lies inside the corpus ``out_root``, cannot be written or
            read, or holds no key.
    """
    path = Path(path).resolve()
    if out_root is not None and path.is_relative_to(Path(out_root).resolve()):
        raise PrivacyError(
            f"the pseudonym secret {path} lies inside the corpus {out_root}; keep it beside "
            "the raw data (pass --secret FILE outside the corpus)"
        )
    if not path.exists():
        if not create:
            raise PrivacyError(f"no pseudonym secret at {path}; give the corpus's --secret FILE")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_hex(32) + "\n")
        except OSError as err:
            raise PrivacyError(
                f"cannot write the pseudonym secret {path} ({err.strerror}); pass --secret "
                "FILE at a writable place outside the corpus"
            ) from None
    try:
        key = bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError):
        raise PrivacyError(
            f"{path} holds no pseudonym secret (64 hex digits); restore it"
        ) from None
    if len(key) < 16:
        raise PrivacyError(f"{path}: the pseudonym secret is too short; restore the original")
    return key


class Pseudonyms:
    """Keyed pseudonyms: the same input and key give the same pseudonym, every time."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    @property
    def fingerprint(self) -> str:
        """An identifier of the key that reveals nothing of it."""
        return hmac.new(self._key, b"usjepa fingerprint", hashlib.sha256).hexdigest()[:16]

    def _digest(self, kind: str, *parts: str) -> str:
        message = "\x00".join((kind, *parts)).encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:20]

    def patient(self, dataset: str, patient: str) -> str:
        """The pseudonym of ``patient`` within ``dataset``."""
        return "p-" + self._digest("patient", dataset, patient)

    def source(self, dataset: str, rel: str) -> str:
        """The pseudonym of a raw file's relative path; its extension is kept."""
        suffix = Path(rel).suffix.lower()
        return "s-" + self._digest("source", dataset, rel) + suffix

    def record(self, out_root: str | Path) -> None:
        """Write the key's fingerprint to ``OUT/privacy.json``, or check it against the one
        there (a corpus holds one key's pseudonyms)."""
        path = Path(out_root) / RECORD_NAME
        if path.exists():
            known = json.loads(path.read_text()).get("secret_fingerprint")
            if known != self.fingerprint:
                raise PrivacyError(
                    f"{path.parent} was pseudonymised under another secret "
                    f"(fingerprint {known}); build with that corpus's --secret FILE"
                )
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps(
                {"pseudonyms": "HMAC-SHA256", "secret_fingerprint": self.fingerprint}, indent=1
            )
            + "\n"
        )


def scrub(text: str, replacements: dict[str, str]) -> str:
    """``text`` with each key of ``replacements`` (a raw path) replaced by its value, the
    longest first (an absolute path before the relative path inside it)."""
    for raw, pseudonym in sorted(replacements.items(), key=lambda kv: -len(kv[0])):
        if raw:
            text = text.replace(raw, pseudonym)
    return text


def check_corpus(out_root: str | Path, pseudonyms: Pseudonyms | None) -> None:
    """Refuse to mix named and pseudonymised builds in one corpus, or two secrets."""
    out = Path(out_root)
    record = out / RECORD_NAME
    if pseudonyms is None:
        if record.exists():
            raise PrivacyError(
                f"{out} holds pseudonymised datasets; build into it with pseudonyms on "
                "(drop --keep-names) and its --secret FILE"
            )
        return
    if not record.exists() and any((out / ".build").glob("*/*.parquet")):
        raise PrivacyError(
            f"{out} holds datasets built with their raw names; build into a new corpus "
            "folder, or pass --keep-names"
        )
    pseudonyms.record(out)
