"""Labelling in a real browser: JupyterLab on localhost shows the labeller on two images, headless Chromium (driven over
the DevTools protocol, no browser download) picks a class, draws a box with mouse events and clicks Save; the box is
then read back from the XML on disk. The image drawn on is a phone photo with EXIF orientation 6 (stored 400 x 300, shown
turned by a browser given the file): the box must land in the XML where it was drawn on the pixels shown. A screenshot
is kept (in $MASK_OD_SCREENSHOTS too, when set)."""

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import write_exif_jpeg, write_jpeg

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, timeout: float, what: str, every: float = 0.25):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception:  # noqa: BLE001 - not ready yet
            pass
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


class DevTools:
    """The few DevTools-protocol calls the test needs, over one page's websocket."""

    def __init__(self, ws_url: str):
        import websocket

        self.ws, self.n = websocket.create_connection(ws_url, timeout=60, suppress_origin=True), 0

    def call(self, method: str, **params):
        self.n += 1
        self.ws.send(json.dumps({"id": self.n, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.n:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def js(self, expr: str):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(r["exceptionDetails"].get("exception", {}).get("description", str(r["exceptionDetails"])))
        return r["result"].get("value")

    def mouse(self, kind: str, x: float, y: float, buttons: int = 1):
        self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", buttons=buttons, clickCount=1)

    def click(self, x: float, y: float):
        self.mouse("mouseMoved", x, y, 0)
        self.mouse("mousePressed", x, y)
        self.mouse("mouseReleased", x, y, 0)

    def center_of(self, selector_js: str) -> tuple[float, float]:
        r = self.js(f"(() => {{ const e = {selector_js}; e.scrollIntoView({{block: 'center'}}); const b = e.getBoundingClientRect();"
                    " return [b.left + b.width / 2, b.top + b.height / 2]; })()")
        return r[0], r[1]


def open_chromium(exe: str, profile: Path, window_size: str):
    """Headless Chromium with a new profile (no background networking: this machine has no internet), and DevTools
    on its first page. Returns (process, DevTools); the caller kills the process."""
    chrome = subprocess.Popen([exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                               "--disable-component-update", "--disable-sync", f"--window-size={window_size}", f"--user-data-dir={profile}",
                               "--remote-debugging-port=0", "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    dt_port = wait_for(lambda: (profile / "DevToolsActivePort").read_text().split()[0], 30, "Chromium's DevTools port")
    pages = wait_for(lambda: [t for t in json.load(urllib.request.urlopen(f"http://127.0.0.1:{dt_port}/json", timeout=2))
                              if t["type"] == "page"], 30, "a Chromium page")
    return chrome, DevTools(pages[0]["webSocketDebuggerUrl"])


def test_draw_a_box_pick_a_class_and_save_in_jupyterlab(tmp_path):
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not exe:
        pytest.skip("no Chromium (apt-get install chromium): the labelling widget cannot be tried in a browser here")
    pytest.importorskip("jupyterlab", reason="JupyterLab is not installed (requirements.txt)")
    pytest.importorskip("websocket", reason="websocket-client is not installed (requirements.txt)")
    images = tmp_path / "photos"
    images.mkdir()
    write_exif_jpeg(images / "a.jpg", h=300, w=400, orientation=6)
    write_jpeg(images / "b.jpg", h=300, w=400)
    code = ("from mask_od.labeling import Labeler\n"
            f"lab = Labeler({str(images)!r}, {{1: 'with_mask', 2: 'without_mask'}})\n"
            "lab.view")
    nb = {"cells": [{"cell_type": "code", "execution_count": None, "id": "c1", "metadata": {}, "outputs": [], "source": code}],
          "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
          "nbformat": 4, "nbformat_minor": 5}
    (tmp_path / "label.ipynb").write_text(json.dumps(nb))
    port, token = free_port(), "masktest"
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp_path / "jcfg"), JUPYTER_RUNTIME_DIR=str(tmp_path / "jrun"),
               TF_CPP_MIN_LOG_LEVEL="3")
    lab = subprocess.Popen([sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
                            f"--ServerApp.token={token}", f"--ServerApp.root_dir={tmp_path}", "--allow-root",
                            "--LabApp.expose_app_in_browser=True", "--ServerApp.open_browser=False"],
                           stdout=subprocess.DEVNULL, stderr=open(tmp_path / "jupyter.log", "w"), env=env)
    profile = tmp_path / "chrome"
    chrome = None
    try:
        wait_for(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2).status == 200,
                 90, "the Jupyter server")
        chrome, dev = open_chromium(exe, profile, "1280,1100")
        dev.call("Page.navigate", url=f"http://127.0.0.1:{port}/lab/tree/label.ipynb?token={token}")
        wait_for(lambda: dev.js("!!(window.jupyterapp && document.querySelector('.jp-Notebook .jp-Cell'))"), 120, "JupyterLab and the notebook")
        time.sleep(2)  # the notebook panel becomes the current widget; a run waits for its kernel by itself
        dev.js("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        wait_for(lambda: dev.js("document.querySelectorAll('.class-label').length === 2 && "
                                "[...document.querySelectorAll('img')].some(i => i.naturalWidth * i.naturalHeight === 120000)"), 120, "the labelling widget")
        assert "1 / 2" in dev.js("document.body.innerText") and "0 / 2 labelled" in dev.js("document.body.innerText")
        # pick the class, then draw from 20%,20% to 60%,70% of the image
        dev.click(*dev.center_of("[...document.querySelectorAll('.class-label')].find(e => e.innerText.includes('without_mask'))"))
        box = dev.js("(() => { const i = [...document.querySelectorAll('img')].find(i => i.naturalWidth * i.naturalHeight === 120000);"
                     " i.scrollIntoView({block: 'center'}); const b = i.getBoundingClientRect(); return [b.left, b.top, b.width, b.height]; })()")
        left, top, w, h = box
        x0, y0, x1, y1 = left + 0.2 * w, top + 0.2 * h, left + 0.6 * w, top + 0.7 * h
        dev.mouse("mouseMoved", x0, y0, 0)
        dev.mouse("mousePressed", x0, y0)
        for k in range(1, 11):
            dev.mouse("mouseMoved", x0 + (x1 - x0) * k / 10, y0 + (y1 - y0) * k / 10)
        dev.mouse("mouseReleased", x1, y1, 0)
        wait_for(lambda: dev.js("document.querySelectorAll('svg rect').length") >= 1, 20, "the drawn box")
        dev.click(*dev.center_of("[...document.querySelectorAll('button')].find(b => b.innerText.trim() === 'Save')"))
        xml = images / "a.xml"
        wait_for(xml.is_file, 30, "a.xml on disk")
        wait_for(lambda: "1 / 2 labelled" in dev.js("document.body.innerText"), 20, "the status line")
        shot = tmp_path / "labeling.png"
        shot.write_bytes(base64.b64decode(dev.call("Page.captureScreenshot", format="png")["data"]))
        if os.environ.get("MASK_OD_SCREENSHOTS"):
            Path(os.environ["MASK_OD_SCREENSHOTS"]).mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, Path(os.environ["MASK_OD_SCREENSHOTS"]) / shot.name)
    finally:
        if chrome is not None:
            chrome.kill()
        lab.terminate()
        try:
            lab.wait(20)
        except subprocess.TimeoutExpired:
            lab.kill()
    from mask_od.annotations import parse_voc_dir

    ann = next(a for a in parse_voc_dir(images) if a.xml_path.name == "a.xml")
    assert ann.names == ["without_mask"]
    (bx0, by0, bx1, by1), = ann.boxes_xyxy.tolist()
    for got, want in ((bx0, 80), (by0, 60), (bx1, 240), (by1, 210)):  # 20% / 60% of 400 px, 20% / 70% of 300 px
        assert abs(got - want) <= 8, (ann.boxes_xyxy, "drawn at 80,60 - 240,210 on the stored pixels shown (a browser "
                                      "given the file shows it turned: the box would land at 60,80 - 180,280)")
    assert shot.stat().st_size > 10_000
