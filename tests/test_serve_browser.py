"""The monitor in a real browser: scripts/serve.py on the shared street video (the shipped model), the page opened in
headless Chromium over the DevTools protocol; the live image updates, the counts change, the two pedestrians come out
as 2 with_mask people; a page opened after the video ended still shows its last frame; Ctrl-C finishes the
recording and the event log. A screenshot is kept (in $MASK_OD_SCREENSHOTS too, when set)."""

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT, need_shared
from test_labeling_browser import free_port, open_chromium, wait_for

pytestmark = pytest.mark.slow

CHECKSUM_JS = """(() => { const i = document.querySelector('#views img'); if (!i || !i.naturalWidth) return null;
  const c = document.createElement('canvas'); c.width = 64; c.height = 36; const g = c.getContext('2d');
  g.drawImage(i, 0, 0, 64, 36); const d = g.getImageData(0, 0, 64, 36).data; let s = 0;
  for (let k = 0; k < d.length; k += 4) s = (s * 31 + d[k] + 7 * d[k + 1] + 13 * d[k + 2]) % 1000000007; return s; })()"""


def stats(port: int) -> dict:
    return json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/stats", timeout=5))


def test_page_shows_live_frames_and_counts_and_ctrl_c_finishes_the_files(tmp_path):
    video = need_shared("data", "video", "street-masks.mp4")
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not exe:
        pytest.skip("no Chromium (apt-get install chromium): the monitor page cannot be tried in a browser here")
    pytest.importorskip("websocket", reason="websocket-client is not installed (requirements.txt)")
    port = free_port()
    log = open(tmp_path / "serve.log", "w")
    server = subprocess.Popen([sys.executable, "scripts/serve.py", "--source", str(video), "--port", str(port), "--stream_width", "640",
                               "--record_dir", str(tmp_path / "rec"), "--event_log", str(tmp_path / "events.jsonl")],
                              cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    chrome = None
    try:  # the browser starts while the model loads: the video (197 frames) may take only a few seconds once it plays
        chrome, dev = open_chromium(exe, tmp_path / "chrome", "1280,800")
        wait_for(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2).status == 200, 60, "the monitor")
        dev.call("Page.navigate", url=f"http://127.0.0.1:{port}/")
        wait_for(lambda: dev.js("window.monitor && window.monitor.updates > 0"), 30, "the first update over SSE")
        first = wait_for(lambda: dev.js(CHECKSUM_JS), 30, "the live image")
        frames0 = dev.js("window.monitor.stats.frames")
        # the image and the count move on while it plays; a slow browser may see the end first (its last frame is sent
        # once): then the video's end ends the waits, and the page must show the last count (below)
        ended = lambda: dev.js("window.monitor.stats.sources[0].state") == "ended"  # noqa: E731
        wait_for(lambda: dev.js(CHECKSUM_JS) not in (None, first) or ended(), 20, "the live image to change")
        wait_for(lambda: dev.js("window.monitor.stats.frames") > frames0 + 10 or ended(), 30, "the frame count to go up on the page")
        wait_for(lambda: "2" in dev.js("[...document.querySelectorAll('#counts tbody tr')].find(r => r.innerText.startsWith("
                                       "'with_mask')).cells[2].innerText"), 60, "2 with_mask people on the page")
        text = dev.js("document.body.innerText")
        assert "compliance" in text and "100 %" in text and str(video) in text, text[:500]
        shot = tmp_path / "serve.png"
        shot.write_bytes(base64.b64decode(dev.call("Page.captureScreenshot", format="png")["data"]))
        if os.environ.get("MASK_OD_SCREENSHOTS"):
            Path(os.environ["MASK_OD_SCREENSHOTS"]).mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, Path(os.environ["MASK_OD_SCREENSHOTS"]) / shot.name)
        assert shot.stat().st_size > 20_000
        s = wait_for(lambda: (st := stats(port))["sources"][0]["state"] == "ended" and st, 120, "the video to end")
        time.sleep(0.5)
        s = stats(port)  # the file played once: the counts stay readable after it ended
        assert s["frames"] == 197 and s["unique_people"]["with_mask"] == 2 and s["people"] == 2, s
        assert s["sources"][0]["state"] == "ended" and dev.js("window.monitor.stats.sources[0].state") in ("up", "ended")
        dev.call("Page.navigate", url=f"http://127.0.0.1:{port}/")  # a page opened after the video ended shows its last frame
        wait_for(lambda: dev.js("window.monitor && window.monitor.updates > 0"), 30, "the reloaded page")
        wait_for(lambda: dev.js(CHECKSUM_JS), 10, "the last frame on a page opened after the video ended")
    finally:
        if chrome is not None:
            chrome.kill()
        server.send_signal(signal.SIGINT)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
    out = (tmp_path / "serve.log").read_text()
    assert server.returncode == 0, out
    assert "197 frames" in out and "people: with_mask 2" in out and "stopped by Ctrl-C or a stop signal" in out, out
    import cv2

    cap = cv2.VideoCapture(str(tmp_path / "rec" / "source0.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 197
    cap.release()
    assert (tmp_path / "events.jsonl").is_file() and not list(tmp_path.glob("**/.*tmp*"))
