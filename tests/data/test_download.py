"""``usjepa data download`` against a server on the loopback address: Zenodo's API and
plain addresses, checksums, resuming a broken download, unpacking, gated sets."""

from __future__ import annotations

import hashlib
import io
import json
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from usjepa.cli import main


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for k in range(3):
            z.writestr(f"release/images/{k}.png", bytes([k]) * 50_000)
    return buffer.getvalue()


class Server:
    """Files by path, a Zenodo-like API, range requests, and a first response that
    breaks off half way when asked to."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.break_once: set[str] = set()
        self.requests: list[tuple[str, str | None]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                outer.requests.append((self.path, self.headers.get("Range")))
                body = outer.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].rstrip("-"))
                    if start >= len(body):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                if self.path in outer.break_once:
                    outer.break_once.discard(self.path)
                    self.wfile.write(body[start : start + (len(body) - start) // 2])
                    self.wfile.flush()
                    self.connection.close()  # the connection breaks mid-file
                    return
                self.wfile.write(body[start:])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    with Server() as s:
        yield s


def _catalog(tmp_path, server: Server) -> str:
    archive, labels = _zip(), b"image,label\n0.png,a\n"
    server.files["/files/data.zip"] = archive
    server.files["/files/labels.csv"] = labels
    server.files["/api/records/42"] = json.dumps(
        {
            "files": [
                {"key": "data.zip", "checksum": "md5:" + hashlib.md5(archive).hexdigest(),
                 "links": {"self": server.url + "/files/data.zip"}},
                {"key": "labels.csv", "checksum": "md5:" + hashlib.md5(labels).hexdigest(),
                 "links": {"self": server.url + "/files/labels.csv"}},
            ]
        }
    ).encode()  # fmt: skip
    server.files["/files/bad.csv"] = b"not what was published"
    server.files["/archive/main.zip"] = archive
    entry = {"organ": "liver", "kinds": ["image"], "licence": "CC BY 4.0", "layout": "x"}
    catalog = {
        "datasets": {
            "ZenodoSet": {**entry, "source": "zenodo", "download": {"zenodo": 42}},
            "Unpublished": {**entry, "source": "repo",
                            "download": {"urls": [{"url": server.url + "/archive/main.zip"}]}},
            "Tampered": {**entry, "source": "x", "download": {"urls": [
                {"url": server.url + "/files/bad.csv", "sha256": "0" * 64}]}},
            "Gated": {**entry, "source": "x", "licence": "research use agreement",
                      "access": {"register": "https://example.org/register",
                                 "steps": "accept the agreement and download the videos",
                                 "expect": ["Videos/*.avi", "FileList.csv"]}},
        },
        "tasks": {},
    }  # fmt: skip
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(catalog))
    return str(path)


def _run(args, tmp_path, catalog, server, capsys) -> tuple[int, str]:
    argv = ["data", "download", *args, "--to", str(tmp_path / "raw"), "--catalog", catalog,
            "--zenodo-api", server.url + "/api/records/"]  # fmt: skip
    try:
        main(argv)
        code = 0
    except SystemExit as stop:
        code = int(stop.code or 0)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_zenodo_record_downloads_verifies_resumes_and_unpacks(tmp_path, server, capsys):
    catalog = _catalog(tmp_path, server)
    server.break_once.add("/files/data.zip")
    code, text = _run(["ZenodoSet"], tmp_path, catalog, server, capsys)
    assert code == 1 and "run again to resume" in text.strip().splitlines()[-1]
    folder = tmp_path / "raw" / "ZenodoSet"
    part = folder / "data.zip.part"
    have = part.stat().st_size if part.exists() else 0
    assert 0 < have < len(server.files["/files/data.zip"])
    code, text = _run(["ZenodoSet"], tmp_path, catalog, server, capsys)
    assert code == 0, text
    ranged = [r for p, r in server.requests if p == "/files/data.zip" and r]
    assert ranged == [f"bytes={have}-"]  # resumed where it broke off, not from the start
    assert (folder / "data.zip").read_bytes() == server.files["/files/data.zip"]
    assert (folder / "release/images/2.png").read_bytes() == bytes([2]) * 50_000
    record = json.loads((folder / ".usjepa-download.json").read_text())
    assert record["data.zip"].startswith("md5:") and set(record) == {"data.zip", "labels.csv"}
    server.requests.clear()
    code, text = _run(["ZenodoSet"], tmp_path, catalog, server, capsys)  # all there: verified
    assert code == 0 and not [p for p, _ in server.requests if p.startswith("/files/")]


def test_unpublished_checksum_is_recorded_then_enforced(tmp_path, server, capsys):
    catalog = _catalog(tmp_path, server)
    code, text = _run(["Unpublished"], tmp_path, catalog, server, capsys)
    assert code == 0 and "no checksum is published; recorded sha256:" in text
    folder = tmp_path / "raw" / "Unpublished"
    (folder / "main.zip").write_bytes(b"changed on disk")
    code, text = _run(["Unpublished"], tmp_path, catalog, server, capsys)
    assert code == 0  # the changed file fails its recorded checksum and is fetched again
    assert (folder / "main.zip").read_bytes() == server.files["/archive/main.zip"]


def test_a_checksum_mismatch_is_refused_and_kept_aside(tmp_path, server, capsys):
    catalog = _catalog(tmp_path, server)
    code, text = _run(["Tampered"], tmp_path, catalog, server, capsys)
    last = text.strip().splitlines()[-1]
    assert code == 1 and "checksum mismatch" in last and "Traceback" not in text
    folder = tmp_path / "raw" / "Tampered"
    assert (folder / "bad.csv.corrupt").exists() and not (folder / "bad.csv").exists()


def test_gated_set_says_where_to_register_then_checks_the_files(tmp_path, server, capsys):
    catalog = _catalog(tmp_path, server)
    code, text = _run(["Gated"], tmp_path, catalog, server, capsys)
    last = text.strip().splitlines()[-1]
    assert code == 1 and "https://example.org/register" in last and "Videos/*.avi" in last
    assert not server.requests  # nothing fetched
    folder = tmp_path / "raw" / "Gated"
    (folder / "Videos").mkdir(parents=True)
    (folder / "Videos" / "a.avi").write_bytes(b"x")
    code, text = _run(["Gated"], tmp_path, catalog, server, capsys)
    assert code == 1 and "missing: FileList.csv" in text
    (folder / "FileList.csv").write_text("FileName\na\n")
    code, text = _run(["Gated"], tmp_path, catalog, server, capsys)
    assert code == 0 and "1 file(s) matching Videos/*.avi" in text


def test_unknown_name_and_unreachable_server_are_explained(tmp_path, server, capsys):
    catalog = _catalog(tmp_path, server)
    code, text = _run(["Nope"], tmp_path, catalog, server, capsys)
    assert code == 1 and "not in the catalogue" in text
    server.__exit__()  # the server goes away
    code, text = _run(["ZenodoSet"], tmp_path, catalog, server, capsys)
    assert code == 1 and "cannot connect" in text.strip().splitlines()[-1]
