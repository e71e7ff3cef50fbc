"""``usjepa data download NAME``: fetch a catalogued dataset whose licence allows it.

A catalogue entry (dataset or task) says how its files are had:

- ``download: {zenodo: RECORD}``: a Zenodo record. Its API lists each file with the
  checksum Zenodo publishes (md5), and each download is verified against it.
  ``files: [...]`` picks some of the record's files.
- ``download: {urls: [{url, name, sha256 or md5}]}``: fixed addresses (GitHub release
  assets, a repository's archive). Without a published checksum, the first complete
  download's sha256 is recorded and later runs verify against it.
- ``access: {register, steps, expect}``: a gated set (registration, a data use
  agreement). Nothing is fetched: the command prints where to register and where to put
  the files, and checks that the files the entry expects are there.

Files go to ``TO/NAME/``. A download is written to ``<file>.part`` and resumed from
where it stopped (an HTTP range request) when run again; a finished file is verified
and skipped. Archives (zip, tar) are unpacked beside themselves once. The record of
what was fetched, with checksums, is ``TO/NAME/.usjepa-download.json``.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import tarfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from usjepa.errors import UsjepaError

ZENODO_API = "https://zenodo.org/api/records/"
RECORD_NAME = ".usjepa-download.json"
_CHUNK = 1 << 20


class DownloadError(UsjepaError, RuntimeError):
    """A download that failed, or a gated dataset whose files are not in place yet."""


@dataclass(frozen=True)
class RemoteFile:
    """One file to fetch: its address, its name on disk and its checksum if published."""

    url: str
    name: str
    checksum: str | None = None  # "md5:<hex>" or "sha256:<hex>"


def _open(url: str, offset: int = 0, timeout: float = 60.0) -> Any:
    request = urllib.request.Request(url, headers={"User-Agent": "usjepa-download"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (catalogued URLs)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # nothing left after offset: the part is complete
            return None
        raise DownloadError(f"{url}: HTTP {err.code} {err.reason}; check the address") from None
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise DownloadError(
            f"{url}: cannot connect ({reason}); check the network and run again to resume"
        ) from None


def zenodo_files(
    record: int | str, api: str = ZENODO_API, only: list[str] | None = None
) -> list[RemoteFile]:
    """The files of Zenodo record ``record`` with their published checksums."""
    url = f"{api.rstrip('/')}/{record}"
    response = _open(url)
    try:
        meta = json.load(response)
    except ValueError:
        raise DownloadError(f"{url}: not a Zenodo record (no JSON); check the record id") from None
    files = []
    for item in meta.get("files", []):
        name = item.get("key") or item.get("filename")
        link = (item.get("links") or {}).get("self") or (item.get("links") or {}).get("download")
        if not name or not link:
            continue
        if only is not None and name not in only:
            continue
        files.append(RemoteFile(link, name, item.get("checksum")))
    if not files:
        raise DownloadError(
            f"Zenodo record {record} lists no files{' named ' + str(only) if only else ''}"
        )
    return files


def _hash(path: Path, kind: str) -> str:
    digest = hashlib.new(kind)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify(path: Path, checksum: str) -> bool:
    kind, _, expected = checksum.partition(":")
    if kind not in ("md5", "sha256") or not expected:
        raise DownloadError(f"checksum {checksum!r}: give md5:<hex> or sha256:<hex>")
    return _hash(path, kind) == expected.lower()


def fetch(file: RemoteFile, folder: Path, known: str | None = None, progress: bool = True) -> str:
    """Download ``file`` into ``folder`` (resuming a ``.part``), verify it, and return the
    checksum it was verified against (the published one, ``known`` from an earlier run, or
    the sha256 now recorded)."""
    folder.mkdir(parents=True, exist_ok=True)
    target, part = folder / file.name, folder / (file.name + ".part")
    expected = file.checksum or known
    if target.exists():
        if expected is None or _verify(target, expected):
            return expected or f"sha256:{_hash(target, 'sha256')}"
        target.unlink()  # a changed file: fetch again from the start
        part.unlink(missing_ok=True)
    offset = part.stat().st_size if part.exists() else 0
    response = _open(file.url, offset)
    if response is not None:
        resumed = offset and getattr(response, "status", 200) == 206
        if not resumed:
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length else None
        with (
            part.open("ab" if resumed else "wb") as handle,
            tqdm(total=total, initial=offset, unit="B", unit_scale=True, desc=file.name,
                 disable=not progress) as bar,
        ):  # fmt: skip
            received = 0
            try:
                for block in iter(lambda: response.read(_CHUNK), b""):
                    handle.write(block)
                    received += len(block)
                    bar.update(len(block))
            except (OSError, TimeoutError, http.client.HTTPException) as err:
                raise DownloadError(
                    f"{file.url}: the connection broke ({err}); run again to resume"
                ) from None
            if length and received < int(length):  # the server closed before the end
                raise DownloadError(
                    f"{file.url}: the connection broke after {offset + received} of {total} "
                    "bytes; run again to resume"
                )
    if expected is not None and not _verify(part, expected):
        bad = part.with_suffix(".corrupt")
        part.replace(bad)
        raise DownloadError(
            f"{file.name}: checksum mismatch (expected {expected}); moved to {bad.name}. "
            "Delete it and run again; if it fails again, the published file has changed"
        )
    part.replace(target)
    return expected or f"sha256:{_hash(target, 'sha256')}"


def unpack(archive: Path) -> bool:
    """Unpack a zip or tar ``archive`` beside itself, once; False for other files."""
    name = archive.name.lower()
    marker = archive.parent / f".{archive.name}.unpacked"
    if marker.exists():
        return True
    if name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zipped:
            for member in zipped.namelist():
                _inside(archive.parent, member)
            zipped.extractall(archive.parent)
    elif name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")):
        with tarfile.open(archive) as tarred:
            tarred.extractall(archive.parent, filter="data")
    else:
        return False
    marker.touch()
    return True


def _inside(root: Path, member: str) -> None:
    if not (root / member).resolve().is_relative_to(root.resolve()):
        raise DownloadError(f"archive member {member!r} would unpack outside {root}; refused")


def check_gated(name: str, access: dict[str, Any], folder: Path) -> str:
    """The summary of a gated dataset's files under ``folder``, or a DownloadError that
    says where to register and where to put them."""
    expect = list(access.get("expect") or [])
    found = {pattern: sum(1 for _ in folder.glob(pattern)) for pattern in expect}
    missing = [p for p, n in found.items() if n == 0]
    if not folder.is_dir() or missing or not expect:
        steps = access.get("steps", "download the release")
        raise DownloadError(
            f"{name} cannot be downloaded by script (registration or a data use agreement): "
            f"register at {access.get('register', 'its publisher')}, {steps}, and unpack it "
            f"into {folder} so that it holds {', '.join(expect) or 'the release'}"
            + (f" (missing: {', '.join(missing)})" if folder.is_dir() and missing else "")
            + "; then run this command again to check"
        )
    return f"{name}: " + ", ".join(f"{n} file(s) matching {p}" for p, n in found.items())


def download(
    name: str,
    spec: dict[str, Any],
    to: str | Path,
    zenodo_api: str = ZENODO_API,
    extract: bool = True,
    progress: bool = True,
    say: Callable[[str], None] = print,
) -> Path:
    """Fetch catalogue entry ``name`` (its ``download`` or ``access`` ``spec``) into
    ``to/name``; returns that folder."""
    folder = Path(to) / name
    if "access" in spec:
        say(check_gated(name, spec["access"], folder))
        return folder
    how = spec.get("download")
    if not how:
        raise DownloadError(
            f"{name} has no download in the catalogue; get it from {spec.get('source')} "
            f"and put it in {folder}"
        )
    if "zenodo" in how:
        files = zenodo_files(how["zenodo"], zenodo_api, how.get("files"))
    else:
        files = [RemoteFile(u["url"], u.get("name") or Path(u["url"]).name.split("?")[0],
                            _published(u)) for u in how.get("urls", [])]  # fmt: skip
    if not files:
        raise DownloadError(f"{name}: its download lists no files; fix the catalogue entry")
    record_path = folder / RECORD_NAME
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    for file in files:
        checksum = fetch(file, folder, record.get(file.name), progress)
        if file.checksum is None and file.name not in record:
            say(f"{file.name}: no checksum is published; recorded {checksum} for later runs")
        record[file.name] = checksum
        record_path.write_text(json.dumps(record, indent=1) + "\n")
        if extract and unpack(folder / file.name):
            say(f"{file.name}: unpacked into {folder}")
    say(f"{name}: {len(files)} file(s) in {folder}, verified")
    return folder


def _published(entry: dict[str, Any]) -> str | None:
    for kind in ("sha256", "md5"):
        if entry.get(kind):
            return f"{kind}:{entry[kind]}"
    return None
