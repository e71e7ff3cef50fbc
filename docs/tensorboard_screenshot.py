"""Screenshot a run's TensorBoard in headless Chromium (for docs/tensorboard_monitors.png).

Starts TensorBoard on LOGDIR, opens its time-series page filtered to the monitors in
Chromium (Debian's ``chromium`` package; driven over the DevTools protocol on a pipe,
standard library only), waits for the charts to draw and saves a PNG::

    python docs/tensorboard_screenshot.py runs/demo/salt --out docs/tensorboard_monitors.png
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


class DevTools:
    """Chromium's DevTools protocol over ``--remote-debugging-pipe`` (fds 3 and 4)."""

    def __init__(self, chromium: str, width: int, height: int) -> None:
        to_chrome_r, self._write = os.pipe()
        self._read, from_chrome_w = os.pipe()
        self.profile = tempfile.mkdtemp(prefix="tb-shot-")
        args = [
            chromium, "--headless=new", "--no-sandbox", "--remote-debugging-pipe",
            "--enable-unsafe-swiftshader", "--use-angle=swiftshader", "--hide-scrollbars",
            f"--window-size={width},{height}", f"--user-data-dir={self.profile}",
            "about:blank",
        ]  # fmt: skip

        def wire() -> None:  # the pipe ends chromium expects: 3 to read, 4 to write
            # copies first: an end already numbered 3 or 4 would stay close-on-exec
            # (dup2 onto itself changes nothing); dup2 makes 3 and 4 inheritable
            read_end, write_end = os.dup(to_chrome_r), os.dup(from_chrome_w)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        self.proc = subprocess.Popen(
            args, preexec_fn=wire, close_fds=False,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._id, self._buffer, self.session = 0, b"", None

    def call(self, method: str, **params: object) -> dict:
        """Send one command (to the attached page once there is one) and wait for its reply."""
        self._id += 1
        message: dict = {"id": self._id, "method": method, "params": params}
        if self.session and not method.startswith("Target."):
            message["sessionId"] = self.session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self._buffer:
                chunk = os.read(self._read, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed the DevTools pipe")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def close(self) -> None:
        """Stop chromium and remove its profile."""
        self.proc.terminate()
        self.proc.wait(timeout=10)
        shutil.rmtree(self.profile, ignore_errors=True)


def wait_for(url: str, seconds: float = 60.0) -> None:
    """Wait until ``url`` answers."""
    end = time.time() + seconds
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).read(16)
            return
        except OSError:
            if time.time() > end:
                raise
            time.sleep(0.5)


def main() -> None:
    """Start TensorBoard, screenshot the monitors page, stop both."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logdir")
    parser.add_argument("--out", default="docs/tensorboard_monitors.png")
    parser.add_argument("--filter", default="monitor/", help="tag filter (regex)")
    parser.add_argument("--width", type=int, default=1600)
    parser.add_argument("--height", type=int, default=1900)
    parser.add_argument("--wait", type=float, default=15.0, help="seconds for charts to draw")
    parser.add_argument("--port", type=int, default=6123)
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    args = parser.parse_args()

    board = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", args.logdir,
         "--port", str(args.port), "--host", "127.0.0.1", "--reload_interval", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    browser = None
    try:
        base = f"http://127.0.0.1:{args.port}"
        wait_for(base)
        browser = DevTools(args.chromium, args.width, args.height)
        target = browser.call("Target.createTarget", url="about:blank")["targetId"]
        browser.session = browser.call(
            "Target.attachToTarget", targetId=target, flatten=True
        )["sessionId"]
        browser.call("Page.enable")
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            width=args.width, height=args.height, deviceScaleFactor=1, mobile=False,
        )  # fmt: skip
        query = urllib.request.quote(args.filter)
        browser.call("Page.navigate", url=f"{base}/?tagFilter={query}#timeseries")
        time.sleep(args.wait)
        # close the settings pane, if open, so the charts get the width
        browser.call(
            "Runtime.evaluate",
            expression="document.querySelector('button.settings-button.checked')?.click()",
        )
        time.sleep(3)
        shot = browser.call("Page.captureScreenshot", format="png")
        Path(args.out).write_bytes(base64.b64decode(shot["data"]))
        print(f"wrote {args.out}")
    finally:
        if browser is not None:
            browser.close()
        board.terminate()
        board.wait(timeout=10)


if __name__ == "__main__":
    main()
