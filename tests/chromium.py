"""A page in a real headless Chromium, driven through the DevTools protocol (a websocket): what
it logged to the console, the exceptions it threw, every request it made, the DOM after its
scripts ran, and a screenshot. For the report tests and docs/report_screenshot.py.

Chromium is Debian's ``chromium`` package (``.ci/run`` installs it); ``find_chromium`` returns
None where there is none."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--remote-debugging-port=0",
    "--enable-unsafe-swiftshader",  # software WebGL without a GPU (plotly's parcoords is WebGL)
]
#: what the software WebGL renderer logs about its own speed (a warning, not the page's)
DRIVER_NOTE = "GL Driver Message (OpenGL, Performance"


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class Page:
    """What a loaded page did: console messages (level, text), exceptions, requested URLs."""

    console: list[tuple[str, str]] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


class Chromium:
    """A headless Chromium with a fresh profile, and a websocket to its first page."""

    def __init__(self, binary: str, width: int = 1400, height: int = 1000):
        from websockets.sync.client import connect

        self.profile = tempfile.mkdtemp(prefix="nnlab-chromium-")
        self.proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port = self._port(timeout=30)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            targets = json.load(r)
        page = next(t for t in targets if t["type"] == "page")
        self.stack = contextlib.ExitStack()
        url = page["webSocketDebuggerUrl"]
        self.ws = self.stack.enter_context(connect(url, max_size=None, open_timeout=10))
        self.ids = itertools.count(1)
        self.page = Page()
        for domain in ("Runtime", "Log", "Network", "Page"):
            self.call(f"{domain}.enable")
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )

    def _port(self, timeout: float) -> int:
        active = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if active.is_file() and active.read_text().strip():
                return int(active.read_text().split()[0])
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with status {self.proc.returncode}")
            time.sleep(0.05)
        raise TimeoutError("chromium did not open its DevTools port")

    def call(self, method: str, timeout: float = 60, **params: Any) -> dict:
        """Send a command and return its result, recording the events that come meanwhile."""
        i = next(self.ids)
        self.ws.send(json.dumps({"id": i, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            msg = json.loads(self.ws.recv(timeout=max(0.01, deadline - time.monotonic())))
            if msg.get("id") == i:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self._event(msg)

    def _event(self, msg: dict) -> None:
        method, p = msg.get("method"), msg.get("params", {})
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in p["args"])
            self.page.console.append((p["type"], text))
        elif method == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            self.page.exceptions.append(d.get("exception", {}).get("description", d["text"]))
        elif method == "Log.entryAdded":
            self.page.console.append((p["entry"]["level"], p["entry"]["text"]))
        elif method == "Network.requestWillBeSent":
            self.page.requests.append(p["request"]["url"])

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"].get("text", "exception"))
        return result["result"].get("value")

    def open(self, path: Path, ready: str, timeout: float = 60) -> Page:
        """Load a file and wait until the JavaScript expression ``ready`` is true."""
        self.call("Page.navigate", url=path.resolve().as_uri())
        deadline = time.monotonic() + timeout
        check = f"(() => {{ try {{ return Boolean({ready}); }} catch (e) {{ return false; }} }})()"
        while not self.evaluate(check):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the page was not ready ({ready}) in {timeout} s")
            time.sleep(0.1)
        return self.page

    def screenshot(self, path: Path, ready: str, width: int = 1400) -> None:
        """The whole page as a PNG: the window is made as tall as the page and the page loaded
        again at that size (plots laid out for a resized window may be caught halfway)."""
        height = int(self.evaluate("document.documentElement.scrollHeight"))
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        url = self.evaluate("location.href")
        self.call("Page.navigate", url="about:blank")
        self.open(Path(url.removeprefix("file://")), ready)
        time.sleep(0.5)
        shot = self.call("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        try:
            self.stack.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
