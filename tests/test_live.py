"""Live loop with a fake detector (fast) and the shared street video."""

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED

from mask_od.detections import Detections
from mask_od.live import AlertHook, FrameGrabber, run_live, stream_detections
from mask_od.sources import SourceError


class FakeDetector:
    """One with_mask box on even frames, one without_mask box on odd frames (by call count)."""

    label_map = {1: "with_mask", 2: "without_mask"}

    def __init__(self, delay_s: float = 0.0):
        self.calls, self.delay_s = 0, delay_s

    def predict(self, rgb):
        time.sleep(self.delay_s)
        c = 1 + self.calls % 2
        self.calls += 1
        return Detections(np.array([[0.1, 0.1, 0.5, 0.4]], np.float32), np.array([c]), np.array([0.9], np.float32), [self.label_map[c]])


def frames(n, h=120, w=160):
    for i in range(n):
        yield np.full((h, w, 3), (i * 7) % 255, np.uint8)


def test_video_and_log_match_frames_and_detections(tmp_path):
    import cv2

    det = FakeDetector()
    s = run_live(det, frames(12), display="none", output_video=tmp_path / "out.mp4", log_path=tmp_path / "log.jsonl", output_fps=10)
    assert s.frames == 12 and s.dropped == 0 and s.message == "source ended"
    assert s.detections_per_class == {"with_mask": 6, "without_mask": 6}
    cap = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    ok, frame = cap.read()
    cap.release()
    assert ok and frame.shape == (120, 160, 3)
    lines = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [x["frame"] for x in lines] == list(range(12))
    assert [x["detections"][0]["class"] for x in lines[:2]] == ["with_mask", "without_mask"]
    assert lines[0]["detections"][0]["box_yxyx"] == [0.1, 0.1, 0.5, 0.4]
    with pytest.raises(FileExistsError):
        run_live(det, frames(2), display="none", output_video=tmp_path / "out.mp4")


def test_dead_source_ends_cleanly_and_keeps_the_recording(tmp_path):
    def dying():
        yield from frames(5)
        raise SourceError("camera unplugged")

    s = run_live(FakeDetector(), dying(), display="none", log_path=tmp_path / "log.jsonl")
    assert s.frames == 5 and "camera unplugged" in s.message
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 5
    assert not list(tmp_path.glob(".*tmp*"))


def test_missing_camera_is_a_clear_error_not_a_hang():
    t = time.perf_counter()
    with pytest.raises(SourceError, match="camera 9"):
        run_live(FakeDetector(), 9, display="none")
    assert time.perf_counter() - t < 20.0  # not a hang (a loaded 2-core machine may take seconds to probe the camera)


def test_window_without_display_does_not_abort(capsys, monkeypatch):
    import sys

    if sys.platform in ("win32", "darwin"):
        pytest.skip("a desktop is always there on Windows and macOS")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    s = run_live(FakeDetector(), frames(3), display="window")
    assert s.frames == 3 and s.display == "none"
    assert "no display" in capsys.readouterr().err
    monkeypatch.setenv("DISPLAY", ":987")  # set, but no X server behind it: Tk refuses, the process lives on
    s = run_live(FakeDetector(), frames(2), display="window")
    assert s.frames == 2 and s.display == "none"
    assert "cannot open a window" in capsys.readouterr().err


@pytest.fixture(scope="session")
def xvfb_server():
    """A virtual X server (Debian package xvfb) for the whole session: Tk keeps its display connection for the life
    of the process and exits it when that server goes away, so the server must outlive every Tk test."""
    import shutil
    import subprocess

    if not shutil.which("Xvfb"):
        pytest.skip("Xvfb not installed (apt-get install xvfb): the desktop window cannot be tested here")
    pytest.importorskip("tkinter", reason="this Python has no tkinter")
    first = 90 + 20 * int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:] or 0)  # each xdist worker has its own 20
    n = next(n for n in range(first, first + 20) if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists())
    proc = subprocess.Popen(["Xvfb", f":{n}", "-screen", "0", "1280x720x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        if Path(f"/tmp/.X11-unix/X{n}").exists():
            break
        time.sleep(0.05)
    else:
        proc.terminate()
        pytest.fail(f"Xvfb :{n} did not start within 10 s")
    yield f":{n}"
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def xvfb(xvfb_server, monkeypatch):
    monkeypatch.setenv("DISPLAY", xvfb_server)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    return xvfb_server


def test_tk_window_shows_frames_and_q_stops(xvfb):
    from mask_od.display import TkWindow, open_view

    view = open_view("window")  # headless OpenCV has no GUI: the Tk window is the desktop window
    assert isinstance(view, TkWindow)
    try:
        frame = np.zeros((100, 160, 3), np.uint8)
        frame[:, :80] = (0, 200, 0)
        frame[:, 80:] = (200, 0, 0)
        assert view.show(frame) and view.size == (160, 100)
        assert view._photo.get(10, 50) == (0, 200, 0) and view._photo.get(150, 50) == (200, 0, 0)
        big = np.zeros((1440, 2560, 3), np.uint8)  # larger than the 1280x720 screen: shrunk to fit
        assert view.show(big) and view.size[0] <= 1152 and view.size[1] <= 648
        view.root.event_generate("<Key-q>")
        assert view.show(frame) is False
    finally:
        view.close()


def test_run_live_in_a_window_ends_on_escape(xvfb, tmp_path):
    from mask_od.display import TkWindow

    view = TkWindow()

    class PressesEscape(FakeDetector):
        def predict(self, rgb):
            if self.calls == 5:  # the user presses Esc while the sixth frame is processed
                view.root.event_generate("<Escape>")
            return super().predict(rgb)

    s = run_live(PressesEscape(), frames(50), display=view, drop_frames=False, log_path=tmp_path / "log.jsonl")
    assert s.display == "window" and s.message == "stopped by key"
    assert s.frames == 6 and view.shown == 5  # the sixth frame was not shown: the key came first
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 6


def test_slow_detector_drops_stale_frames_instead_of_lagging():
    def camera():  # a fast 'live' source: 200 frames at ~1 ms each
        for f in frames(200):
            time.sleep(0.001)
            yield f

    results = list(stream_detections(FakeDetector(delay_s=0.02), camera(), drop_frames=True))
    assert results[-1].dropped > 50
    assert len(results) + results[-1].dropped <= 200
    assert len(results) < 150


def test_grabber_without_dropping_delivers_every_frame():
    g = FrameGrabber(frames(30), drop=False)
    got = 0
    while g.get() is not None:
        got += 1
    g.close()
    assert got == 30 and g.dropped == 0


def test_alert_runs_off_the_loop_with_cooldown():
    started, release, finished = threading.Event(), threading.Event(), threading.Event()
    msgs = []

    def slow_alert(msg):
        msgs.append(msg)
        started.set()
        release.wait(30)
        finished.set()

    hook = AlertHook(slow_alert, classes=["without_mask"], cooldown_s=10)
    bare = Detections(np.zeros((1, 4), np.float32), np.array([2]), np.array([0.9], np.float32), ["without_mask"])
    masked = Detections(np.zeros((1, 4), np.float32), np.array([1]), np.array([0.9], np.float32), ["with_mask"])
    assert hook(bare, now=100.0) is True
    assert not finished.is_set()  # returned while the callback still waits for release: it did not wait for it
    assert started.wait(10)
    assert hook(bare, now=105.0) is False  # cooldown
    assert hook(masked, now=200.0) is False  # not an alert class
    release.set()
    assert finished.wait(10)
    assert hook(bare, now=200.0) is True and hook.count == 2
    assert "without_mask" in msgs[0]


def test_wait_returns_once_the_callback_has_said_its_alert():
    """wait() returned once the queue was empty, while the callback was still printing: detect_live's last ALERT line
    came after (or inside) its summary line in 3 of 6 runs of a fresh-user try."""
    said = []

    def slow_print(msg):
        time.sleep(0.3)
        said.append(msg)

    hook = AlertHook(slow_print, classes=["without_mask"], cooldown_s=0)
    bare = Detections(np.zeros((1, 4), np.float32), np.array([2]), np.array([0.9], np.float32), ["without_mask"])
    assert hook(bare, now=1.0) and hook(bare, now=2.0)
    assert hook.wait(10) and len(said) == 2, said
    assert said[0].startswith("ALERT: 1 face without_mask at"), said[0]
    # run_live returns (and detect_live prints its summary) only once the callback has said the last alert
    hook, said = AlertHook(slow_print, classes=["without_mask"], cooldown_s=0), []
    s = run_live(FakeDetector(), frames(4), display="none", alert=hook)
    assert s.alerts == 2 and len(said) == 2, (s.alerts, said)


def test_alerts_queue_while_the_callback_is_busy_and_drop_beyond_the_bound():
    """The monitor fires one alert per person (cooldown 0): two people in one frame make two alerts even when the
    first callback is still running; past max_pending they are counted as dropped, and the loop never waits."""
    release, started, msgs = threading.Event(), threading.Event(), []

    def slow_alert(msg):
        started.set()
        release.wait(30)
        msgs.append(msg)

    hook = AlertHook(slow_alert, classes=["without_mask"], cooldown_s=0, max_pending=2)
    bare = Detections(np.zeros((1, 4), np.float32), np.array([2]), np.array([0.9], np.float32), ["without_mask"])
    t0 = time.monotonic()
    sent = [hook(bare, now=1.0)]
    assert started.wait(10)  # the worker holds the 1st (a worker slow to start would leave it queued: 2 sent, not 3)
    sent += [hook(bare, now=2.0 + k) for k in range(4)]  # 2 wait, the other 2 are dropped
    assert time.monotonic() - t0 < 10.0 and sent == [True, True, True, False, False], sent  # the loop never waited
    assert hook.count == 3 and hook.dropped == 2
    worker = hook._worker
    assert worker is not None
    release.set()
    assert hook.wait(10)
    for _ in range(500):
        if len(msgs) == hook.count:
            break
        time.sleep(0.01)
    assert len(msgs) == hook.count
    worker.join(5)  # idle for a second, the worker ends: no thread outlives its alerts
    assert not worker.is_alive()
    assert hook(bare, now=100.0) is True and hook.wait(5)  # a later alert starts a new one


def test_shared_video_frames_and_size(tmp_path):
    video = SHARED / "data" / "video" / "street-masks.mp4"
    if not video.exists():
        pytest.skip("../shared/data/video is absent")
    import cv2

    s = run_live(FakeDetector(), video, display="none", output_video=tmp_path / "o.mp4", max_frames=40)
    assert s.frames == 40 and s.message == "max_frames (40) reached"  # the video has 197: it did not end
    cap = cv2.VideoCapture(str(tmp_path / "o.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 40
    assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (1366, 768)
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(30, abs=0.5)
    cap.release()


@pytest.fixture
def http_streams(tmp_path):
    """A local HTTP server: /v.mp4 (a 25-frame video file), /mjpeg (15 JPEGs as multipart/x-mixed-replace, the way
    IP-camera apps stream) and /silent (accepts, never answers)."""
    import http.server

    import cv2

    w = cv2.VideoWriter(str(tmp_path / "v.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (160, 120))
    for i in range(25):
        w.write(np.full((120, 160, 3), i * 9, np.uint8))
    w.release()
    video = (tmp_path / "v.mp4").read_bytes()
    release = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            if self.path == "/v.mp4":
                self.send_response(200)
                self.send_header("Content-Type", "video/mp4")
                self.send_header("Content-Length", str(len(video)))
                self.end_headers()
                self.wfile.write(video)
            elif self.path == "/mjpeg":
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                for i in range(15):
                    ok, buf = cv2.imencode(".jpg", np.full((120, 160, 3), i * 15, np.uint8))
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(buf) + buf.tobytes() + b"\r\n")
            else:
                release.wait(30)

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    release.set()
    srv.shutdown()
    srv.server_close()


def test_http_video_and_mjpeg_streams(http_streams):
    from mask_od.sources import iter_frames

    assert sum(1 for _ in iter_frames(f"{http_streams}/v.mp4")) == 25
    got = list(iter_frames(f"{http_streams}/mjpeg"))
    assert len(got) == 15 and got[0].shape == (120, 160, 3)
    assert [int(round(f.mean() / 15)) for f in got] == list(range(15))  # every frame, in order
    s = run_live(FakeDetector(), f"{http_streams}/mjpeg", display="none", drop_frames=False)
    assert s.frames == 15 and s.message == "source ended"


def test_silent_stream_fails_within_the_timeout_not_a_hang(http_streams):
    from mask_od.sources import iter_frames

    t = time.perf_counter()
    with pytest.raises(SourceError, match=r"/silent: the stream could not be opened \(refused, or no answer within 1 s"):
        next(iter_frames(f"{http_streams}/silent", timeout_s=1))
    assert time.perf_counter() - t < 20  # not a hang (FFmpeg alone would wait for minutes); generous on a loaded machine


def test_video_sink_keeps_every_frame_in_order_and_names_a_bad_path(tmp_path):
    import cv2

    from mask_od.live import VideoSink

    sink = VideoSink(tmp_path / "v.mp4", 10, (64, 48), depth=2)
    for i in range(20):  # more frames than the queue holds: write waits, nothing is dropped
        sink.write(np.full((48, 64, 3), i * 12, np.uint8))
    sink.release()
    cap = cv2.VideoCapture(str(tmp_path / "v.mp4"))
    means = []
    while (f := cap.read())[0]:
        means.append(f[1].mean())
    assert len(means) == 20 and all(a < b for a, b in zip(means, means[1:]))
    with pytest.raises(OSError, match="no_such_dir"):
        VideoSink(tmp_path / "no_such_dir" / "v.mp4", 10, (64, 48))


class FlakyCapture:
    """A cv2.VideoCapture stand-in for a camera: ``n`` frames, and reads that fail at the listed read numbers."""

    def __init__(self, n: int, fail_at=(), fail_forever_after: int | None = None):
        self.n, self.fail_at, self.after, self.reads, self.sent = n, set(fail_at), fail_forever_after, 0, 0

    def read(self):
        self.reads += 1
        if self.reads in self.fail_at or (self.after is not None and self.sent >= self.after) or self.sent >= self.n:
            return False, None
        self.sent += 1
        return True, np.full((48, 64, 3), self.sent, np.uint8)

    def release(self):
        pass


def test_a_failed_camera_read_is_retried_and_a_silent_camera_ends(monkeypatch):
    """Issue 26.8: one failed cap.read() ended a camera session."""
    import mask_od.sources as sources

    cap = FlakyCapture(6, fail_at=(3, 4))
    monkeypatch.setattr(sources, "_open_capture", lambda source, timeout_s: cap)
    assert len(list(sources.iter_frames(0, max_frames=6, timeout_s=2.0))) == 6  # two bad reads in a row, then on
    silent = FlakyCapture(100, fail_forever_after=2)
    monkeypatch.setattr(sources, "_open_capture", lambda source, timeout_s: silent)
    assert len(list(sources.iter_frames(0, timeout_s=0.3))) == 2 and silent.reads > 3  # retried, then ended


def test_a_camera_recording_plays_at_the_processing_rate(monkeypatch, tmp_path):
    """Issue 26.8: a camera recording was written at 30 fps whatever the processing rate (10 processed FPS played 3x
    too fast). A detector taking 0.1 s a frame processes ~10 FPS or fewer: the video says so, within the measurement."""
    import cv2

    import mask_od.sources as sources

    monkeypatch.setattr(sources, "_open_capture", lambda source, timeout_s: FlakyCapture(14))
    s = run_live(FakeDetector(delay_s=0.1), 0, display="none", output_video=tmp_path / "cam.mp4", drop_frames=False)
    cap = cv2.VideoCapture(str(tmp_path / "cam.mp4"))
    fps, count = cap.get(cv2.CAP_PROP_FPS), int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    assert s.frames == 14 and count == 14  # the frames held while measuring are all written
    assert 1.0 <= fps <= 10.5, fps  # at most 1 / 0.1 s (a loaded machine processes fewer); never 30


def test_summary_counts_read_plainly():
    from mask_od.live import LiveSummary

    one = LiveSummary(1, 1, 1.25, 0.8, {"with_mask": 2}, {"with_mask": 1}, 0, "max_frames (1) reached")
    assert str(one).startswith("1 frame in 1.2 s (0.8 FPS), 1 stale frame dropped; detections with_mask: 2; 0 alerts."), str(one)
    assert str(one).endswith(".") and not str(one).endswith(".."), str(one)
    two = LiveSummary(2, 0, 2.0, 1.0, {}, {}, 1, "source ended")
    assert str(two).startswith("2 frames in 2.0 s (1.0 FPS), 0 stale frames dropped; detections none;"), str(two)
    assert str(two).endswith("; 1 alert. source ended."), str(two)
    assert str(LiveSummary(2, 0, 2.0, 1.0, {}, {}, 1, "source stopped: gone.")).endswith("source stopped: gone."), "one full stop"


def test_sigterm_ends_a_live_run_like_ctrl_c(tmp_path):
    """SIGTERM (a service manager, `kill`) killed the process mid-run: no summary, and the video and log stayed hidden
    temporary files (a fresh-user try: 2 of 2 runs)."""
    import subprocess
    import sys

    script = f"""
import os, signal, threading
import numpy as np
from mask_od.detections import Detections
from mask_od.live import run_live

class Nobody:
    label_map = {{1: "with_mask"}}
    def predict(self, rgb):
        return Detections.from_arrays(np.zeros((0, 4), np.float32), [], np.zeros(0, np.float32), self.label_map)

def frames():
    threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGTERM)).start()  # once run_live reads (its handler is set)
    while True:
        yield np.zeros((48, 64, 3), np.uint8)

print(run_live(Nobody(), frames(), display="none", output_video={str(tmp_path / 'v.mp4')!r}, log_path={str(tmp_path / 'l.jsonl')!r}, output_fps=10))
"""
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "stopped by interrupt." in p.stdout, (p.returncode, p.stdout, p.stderr[-2000:])
    assert sorted(f.name for f in tmp_path.iterdir()) == ["l.jsonl", "v.mp4"], list(tmp_path.iterdir())
