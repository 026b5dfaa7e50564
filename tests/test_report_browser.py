"""The report in a real browser: headless Chromium, driven over the Chrome DevTools Protocol.

The report of a whole (small, synthetic) pipeline run is opened from disk with the network
switched off, on a wide screen and on a phone-sized one: every figure must have loaded, the
console must stay free of errors, the verdict table must have one row per claim, and nothing
may be fetched from elsewhere. Screenshots go beside the report (and into the folder named by
``LFWCNN_SCREENSHOTS``, when set, for a person to look at).

Needs ``/usr/bin/chromium`` (Debian package ``chromium``) and ``websocket-client``.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CLAIMS = ["C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8"]

if not CHROMIUM.exists():
    # CI sets LFWCNN_REQUIRE_CHROMIUM=1, so that the browser checks cannot pass by skipping
    if os.environ.get("LFWCNN_REQUIRE_CHROMIUM") == "1":
        pytest.fail(f"LFWCNN_REQUIRE_CHROMIUM=1 but {CHROMIUM} is absent", pytrace=False)
    pytest.skip(f"{CHROMIUM} is absent (Debian package chromium; .ci/run installs it)",
                allow_module_level=True)
websocket = pytest.importorskip("websocket", reason="websocket-client is not installed")


class Page:
    """One browser tab: send DevTools commands, collect the events that arrive meanwhile."""

    def __init__(self, ws_url: str) -> None:
        self.ws = websocket.create_connection(ws_url, timeout=60, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, method: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        seen = len(self.events)
        while time.monotonic() < deadline:
            for event in self.events[seen:]:
                if event.get("method") == method:
                    return event
            seen = len(self.events)
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            self.events.append(json.loads(self.ws.recv()))
        raise TimeoutError(f"no {method} within {timeout} s")

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, url: str) -> None:
        self.send("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")

    def screenshot(self, path: Path, *, full_page: bool) -> None:
        params = {"format": "png"}
        if full_page:
            size = self.send("Page.getLayoutMetrics")["cssContentSize"]
            params.update(captureBeyondViewport=True, clip={
                "x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1})
        data = self.send("Page.captureScreenshot", **params)["data"]
        path.write_bytes(base64.b64decode(data))

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and browser-logged errors (failed loads)."""
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error",
                                                                                "assert"):
                found.append(" ".join(str(a.get("value", a.get("description")))
                                      for a in params.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                found.append(params["exceptionDetails"].get("text", "exception"))
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                found.append(f"{params['entry'].get('source')}: {params['entry'].get('text')}")
        return found


@pytest.fixture
def chromium(tmp_path: Path):
    """A headless Chromium of our own, with its own profile; yields its DevTools HTTP base."""
    profile = tmp_path / "chromium-profile"
    process = subprocess.Popen(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", "--hide-scrollbars", f"--user-data-dir={profile}",
         "--remote-debugging-port=0", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Chromium did not start (exit code {process.poll()})")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port_file.read_text().splitlines()[0]}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def open_tab(base: str) -> Page:
    with urllib.request.urlopen(f"{base}/json/list", timeout=30) as answer:
        targets = json.load(answer)
    tab = next(t for t in targets if t.get("type") == "page")
    page = Page(tab["webSocketDebuggerUrl"])
    for domain in ("Page", "Runtime", "Log", "Network"):
        page.send(f"{domain}.enable")
    # offline: a report that needs anything from elsewhere shows it as a failed load
    page.send("Network.emulateNetworkConditions", offline=True, latency=0,
              downloadThroughput=-1, uploadThroughput=-1)
    return page


PAGE_FACTS = """(() => {
  const images = [...document.images].map(i => ({
    alt: i.alt, complete: i.complete, width: i.naturalWidth, inline: i.src.startsWith('data:')}));
  const rows = [...document.querySelectorAll('#verdict-table tbody tr.verdict-row')];
  const external = [...document.querySelectorAll('[src], [href], link')]
    .map(e => e.getAttribute('src') || e.getAttribute('href') || '')
    .filter(u => /^(https?:)?\\/\\//.test(u));
  const resources = performance.getEntriesByType('resource').map(e => e.name)
    .filter(n => !n.startsWith('data:'));
  return {
    title: document.title, images,
    claims: rows.map(r => r.dataset.claim), statuses: rows.map(r => r.dataset.status),
    badges: rows.map(r => r.querySelector('.badge').textContent.trim()),
    headline: document.querySelector('.headline').textContent,
    sections: [...document.querySelectorAll('main > section[id]')].map(s => s.id),
    external, resources,
    scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
  };
})()"""


def check_page(page: Page, facts: dict) -> None:
    assert facts["claims"] == CLAIMS
    assert all(s in ("holds", "partly", "fails", "undetermined", "not run")
               for s in facts["statuses"])
    assert all(facts["badges"]), facts["badges"]
    # training curves, accuracy, confusion, input image, sparsity plot and six layer grids
    assert len(facts["images"]) >= 11, facts["images"]
    broken = [img["alt"] for img in facts["images"] if not (img["complete"] and img["width"] > 0)]
    assert not broken, f"images that did not load: {broken}"
    assert all(img["inline"] for img in facts["images"])
    assert not facts["external"] and not facts["resources"], (facts["external"],
                                                             facts["resources"])
    assert facts["sections"] == ["verdict", "data", "training", "evaluation", "activations",
                                 "dissection", "inversion", "backprop", "environment"]
    assert page.errors() == []


def test_report_opens_offline_in_chromium_on_wide_and_phone_screens(chromium, tmp_path_factory):
    from test_report import pipeline_report  # the one small pipeline run of the session

    report = pipeline_report(tmp_path_factory)
    page = open_tab(chromium)
    try:
        page.send("Emulation.setDeviceMetricsOverride", width=1280, height=900,
                  deviceScaleFactor=1, mobile=False)
        page.open(report.resolve().as_uri())
        facts = page.evaluate(PAGE_FACTS)
        check_page(page, facts)
        assert facts["title"].startswith("Rolling in the Deep CNNs")
        desktop = report.parent / "screenshot-desktop.png"
        page.screenshot(desktop, full_page=True)

        page.send("Emulation.setDeviceMetricsOverride", width=390, height=844,
                  deviceScaleFactor=2, mobile=True)
        page.open(report.resolve().as_uri())
        phone_facts = page.evaluate(PAGE_FACTS)
        check_page(page, phone_facts)
        # readable on a phone: wide tables scroll inside their box, the page itself does not
        assert phone_facts["scrollWidth"] <= phone_facts["innerWidth"] + 1, phone_facts
        phone = report.parent / "screenshot-phone.png"
        page.screenshot(phone, full_page=False)
    finally:
        page.ws.close()
    for shot in (desktop, phone):
        assert shot.stat().st_size > 10_000
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    keep = os.environ.get("LFWCNN_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        for shot in (desktop, phone):
            shutil.copy(shot, Path(keep) / shot.name)


INJECTION_FACTS = """(() => ({
  injected: window.__injected === undefined ? null : window.__injected,
  strayImages: document.querySelectorAll('img[src="x"]').length,
  // Snakemake's data blocks, each a <script> of its own: all ran to their end
  dataLoaded: [typeof results, typeof rules, typeof categories, typeof metadata]
    .every(t => t === 'object'),
  text: document.body.innerText,
}))()"""


def test_markup_in_config_and_names_injects_nothing_in_either_report(chromium, tmp_path_factory):
    """Markup in report.title, a person's folder name and the source path (issue 13, point 6):
    Snakemake's --report and the project's report both load without an error, and no element
    or handler of that markup exists in either page; the project's report shows it as text."""
    from test_hostile_errors import MARKUP_PERSON, MARKUP_TITLE, REPORT, markup_run

    project = markup_run(tmp_path_factory)
    page = open_tab(chromium)
    try:
        page.open((project / "report.html").resolve().as_uri())
        time.sleep(1)  # the React app renders after the load event
        facts = page.evaluate(INJECTION_FACTS)
        assert (facts["injected"], facts["strayImages"]) == (None, 0), facts["injected"]
        assert facts["dataLoaded"] and "Loading Snakemake Report" not in facts["text"]
        assert page.errors() == []

        page.events.clear()
        page.open((project / REPORT).resolve().as_uri())
        facts = page.evaluate(INJECTION_FACTS)
        assert (facts["injected"], facts["strayImages"]) == (None, 0)
        assert page.evaluate("document.querySelector('h1').textContent") == MARKUP_TITLE
        assert page.evaluate("document.title") == MARKUP_TITLE
        assert MARKUP_PERSON in facts["text"]
        assert page.errors() == []
    finally:
        page.ws.close()
