"""The quick report as a reader sees it: ``results/index.html`` and one notebook page opened in a
real headless Chromium (Debian package ``chromium``), driven over the DevTools protocol with
``websocket-client``. Fails on raw TeX in the rendered text (a formula the offline KaTeX did not
typeset), a broken image (naturalWidth 0) or anything the console reports as an error (a missing
asset, a script error, a request to the network). Skipped, with the reason, without
``/usr/bin/chromium`` (``make system`` installs it when run as root)."""
import json
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import websocket

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
RAW_TEX = re.compile(r"\$\$|\\(theta|frac|sqrt|alpha|beta|eta|epsilon|hat|odot|nabla|cdot|left|right|mathbf)\b")

pytestmark = pytest.mark.slow


class Chromium:
    """One headless Chromium with one page, spoken to over the DevTools protocol."""

    def __init__(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.profile = tempfile.mkdtemp(prefix="chromium-profile-")
        self.proc = subprocess.Popen([str(CHROMIUM), *FLAGS, f"--user-data-dir={self.profile}",
                                      f"--remote-debugging-port={port}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as r:
                    pages = [t for t in json.load(r) if t.get("type") == "page"]
                if pages:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.2)
        self.ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=30,
                                              suppress_origin=True)
        self.next_id, self.events = 0, []
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")

    def call(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_for(self, method, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(e.get("method") == method for e in self.events):
                return
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            self.events.append(json.loads(self.ws.recv()))
        raise TimeoutError(method)

    def open(self, path: Path) -> dict:
        """Load ``path``; return its rendered text, broken images, KaTeX count and console errors."""
        self.events = []
        self.call("Page.navigate", url=path.resolve().as_uri())
        self.wait_for("Page.loadEventFired")
        time.sleep(0.5)                  # KaTeX typesets on DOMContentLoaded; let late errors arrive
        js = """JSON.stringify({
            text: document.body.innerText,
            images: document.images.length,
            broken: Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0)
                         .map(i => i.src.slice(0, 120)),
            katex: document.querySelectorAll('.katex').length,
            code_inputs: document.querySelectorAll('.jp-CodeCell .jp-InputArea').length,
            katex_errors: Array.from(document.querySelectorAll('.katex-error')).map(e => e.textContent)})"""
        page = json.loads(self.call("Runtime.evaluate", expression=js, returnByValue=True)["result"]["value"])
        errors = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.exceptionThrown":
                errors.append(p["exceptionDetails"].get("exception", {}).get("description")
                              or p["exceptionDetails"].get("text"))
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                errors.append(" ".join(str(a.get("value", a.get("description"))) for a in p.get("args", [])))
            elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
                errors.append(f"{p['entry'].get('text')} {p['entry'].get('url', '')}")
        page["console_errors"] = errors
        return page

    def close(self):
        if getattr(self, "ws", None) is not None:
            self.ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent: install Debian's chromium (make system does it as root)")
    b = Chromium()
    yield b
    b.close()


def check_page(page: dict, where: str) -> None:
    raw = RAW_TEX.search(page["text"])
    context = page["text"][max(0, raw.start() - 60):raw.end() + 60] if raw else ""
    assert raw is None, f"{where}: raw TeX in the rendered text: ...{context}..."
    assert not page["katex_errors"], f"{where}: KaTeX could not typeset {page['katex_errors']}"
    assert not page["broken"], f"{where}: broken images {page['broken']}"
    assert not page["console_errors"], f"{where}: console errors {page['console_errors']}"


def test_index_renders(browser, results):
    page = browser.open(results / "index.html")
    check_page(page, "index.html")
    assert page["images"] >= 5, "one headline figure per notebook"
    assert "01 · How does each update rule move?" in page["text"]


def test_notebook_page_renders_formulas_offline(browser, results):
    page = browser.open(results / "html" / "01_update_rules.html")
    check_page(page, "html/01_update_rules.html")
    assert page["katex"] > 10, "formulas typeset by the shipped KaTeX"
    assert page["images"] >= 5
    assert page["code_inputs"] <= 2, "code hidden: only the parameters (and the injected ones) show"
