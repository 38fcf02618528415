"""Colab: the webcam source (its JavaScript in a real browser, headless Chromium with a fake camera; the Python side
with a stand-in for Colab's eval_js) and the set-up cell's check for packages replaced under the running kernel.
Colab's own eval_js bridge and its preinstalled environment are what only Colab can run."""

import base64
import json
import shutil
import subprocess

import numpy as np
import pytest

from mask_od.notebook import WEBCAM_JS, colab_webcam_frames, frame_from_data_url


def data_url(bgr: np.ndarray) -> str:
    import cv2

    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode()


def test_frame_from_data_url_decodes_jpeg_and_refuses_junk():
    img = np.zeros((48, 64, 3), np.uint8)
    img[:, 32:] = (0, 0, 255)  # right half red (BGR)
    got = frame_from_data_url(data_url(img))
    assert got.shape == (48, 64, 3)
    assert got[24, 50, 2] > 200 and got[24, 50, 0] < 50 and got[24, 10].max() < 50
    for junk in ("data:,", "", None, "data:image/jpeg;base64,!!!", "data:image/jpeg;base64," + base64.b64encode(b"no jpeg").decode()):
        assert frame_from_data_url(junk) is None


def test_colab_webcam_frames_talks_to_the_page_and_stops_it():
    frames = [np.full((30, 40, 3), v, np.uint8) for v in (20, 120, 220)]
    pages, calls = [], []
    answers = iter([data_url(f) for f in frames] + ["data:,"])  # the browser gives three frames, then none

    def eval_js(expr):
        calls.append(expr)
        return next(answers) if expr.startswith("maskodGrab(") else None

    got = list(colab_webcam_frames(quality=0.7, eval_js=eval_js, run_js=pages.append))
    assert pages == [WEBCAM_JS]
    assert len(got) == 3 and [int(round(g.mean())) for g in got] == pytest.approx([20, 120, 220], abs=3)
    assert calls[:4] == ["maskodGrab(0.7)"] * 4 and calls[-1] == "maskodStop()"
    calls.clear()
    answers = iter([data_url(frames[0])] * 10)
    assert len(list(colab_webcam_frames(max_frames=2, eval_js=eval_js, run_js=pages.append))) == 2
    assert calls == ["maskodGrab(0.8)"] * 2 + ["maskodStop()"]


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not exe:
        pytest.skip("no Chromium (apt-get install chromium): the webcam JavaScript cannot run in a browser here")
    return exe


def test_webcam_javascript_in_headless_chromium_with_a_fake_camera(tmp_path):
    """The page runs WEBCAM_JS against Chromium's fake camera and posts what it got to a local server; its load event
    waits on an image the server holds back until then, so --dump-dom does not end the browser early."""
    import http.server
    import threading

    exe = chromium()
    page = f"""<html><body><script>{WEBCAM_JS}</script><script>
      const post = (r) => fetch('/result', {{method: 'POST', body: JSON.stringify(r)}});
      (async () => {{
        const a = await maskodGrab(0.8), b = await maskodGrab(0.5);
        const live = window._maskod.stream.getVideoTracks()[0].readyState;
        maskodStop();
        await post({{a: a, b: b, live: live, stopped: window._maskod.video === undefined,
                    videos: document.querySelectorAll('video').length}});
      }})().catch(e => post({{error: String(e)}}));
    </script><img src="/wait"></body></html>""".encode()
    result, done = {}, threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def _send(self, body: bytes, kind: str):
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path == "/wait":
                done.wait(60)
                self._send(b"", "image/gif")
            else:
                self._send(page, "text/html")

        def do_POST(self):
            result.update(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self._send(b"ok", "text/plain")
            done.set()

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
           "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream", "--dump-dom",
           f"http://127.0.0.1:{srv.server_address[1]}/"]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    finally:
        done.set()
        srv.shutdown()
        srv.server_close()
    assert result, f"the page posted nothing; Chromium said: {p.stderr[-800:]}"
    assert "error" not in result, result
    assert result["live"] == "live" and result["stopped"] and result["videos"] == 0  # maskodStop ends camera and element
    a, b = frame_from_data_url(result["a"]), frame_from_data_url(result["b"])
    assert a is not None and b is not None and a.shape == b.shape and a.shape[2] == 3
    assert a.shape[0] >= 240 and a.shape[1] >= 320  # Chromium's fake camera: a moving test pattern, 640x480 by default
    assert a.std() > 5  # a picture, not a blank canvas


def test_stale_modules_after_an_install_are_named():
    import numpy

    from mask_od.notebook import stale_modules

    assert stale_modules({"numpy": numpy.__version__}) == []  # what is loaded is what is installed
    assert stale_modules({"numpy": "1.0.0", "no_such_module_xyz": "1"}) == ["numpy"]
    import cv2

    assert stale_modules({"cv2": cv2.__version__}) == []  # "5.0.0" loaded from the wheel "5.0.0.93": the same
    assert stale_modules({"cv2": "4.13.0"}) == ["cv2"]


def pins(path) -> dict[str, str]:
    """name -> version of the ``name==version`` lines of a requirements file (names normalized as pip does)."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            out[name.strip().lower().replace("_", "-")] = version.strip()
    return out


# What Colab's runtime ships and pins itself (google-colab requires exact pandas, ipykernel, ...): replacing one under
# the running kernel forces a restart, and a newer ipykernel / jupyter_client can break Colab's own front-end bridge.
COLAB_SHIPS = {"numpy", "pandas", "matplotlib", "opencv-python", "opencv-python-headless", "ipykernel", "ipython",
               "jupyter-client", "tornado", "traitlets", "pycocotools", "pillow", "scipy", "protobuf", "tensorflow",
               "ipywidgets"}


def test_colab_requirements_add_only_what_colab_lacks_with_the_tested_pins():
    from conftest import ROOT

    colab, full = pins(ROOT / "requirements-colab.txt"), pins(ROOT / "requirements.txt")
    assert {"tf-models-official", "ai-edge-litert"} <= set(colab)
    assert {n: v for n, v in colab.items() if full.get(n) != v} == {}  # same versions as the tested set-up
    assert set(colab) & COLAB_SHIPS == set()


def test_setup_on_colab_installs_the_colab_requirements_and_asks_for_a_restart_only_when_needed(monkeypatch, tmp_path):
    from conftest import ROOT

    from mask_od import notebook

    calls, real_run = [], subprocess.run

    def fake_run(cmd, *a, **kw):  # record pip, let anything else (TensorFlow's own probes) run
        return calls.append(cmd) if cmd[1:3] == ["-m", "pip"] else real_run(cmd, *a, **kw)

    monkeypatch.setattr(notebook, "in_colab", lambda: True)
    monkeypatch.setattr(notebook.subprocess, "run", fake_run)
    info = notebook.setup(ROOT / "requirements-colab.txt")
    assert info["colab"] and info["tensorflow"]
    assert calls[0][-2:] == ["-r", str(ROOT / "requirements-colab.txt")] and calls[1][-2:] == ["-e", "."]

    with pytest.raises(FileNotFoundError, match="nothere.txt"):
        notebook.setup(tmp_path / "nothere.txt")
    monkeypatch.setattr(notebook, "stale_modules", lambda loaded: ["numpy"])
    with pytest.raises(RuntimeError, match="replaced numpy.*Restart session"):
        notebook.setup(ROOT / "requirements-colab.txt")
    assert notebook.setup(ROOT / "requirements-colab.txt", install_in_colab=False)["colab"]  # no install, no check
