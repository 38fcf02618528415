"""Live loop with a fake detector (fast) and the shared street video."""

import json
import threading
import time

import numpy as np
import pytest

from conftest import SHARED
from mask_od.detect import Detections
from mask_od.live import AlertHook, FrameGrabber, gui_available, run_live, stream_detections
from mask_od.sources import SourceError


class FakeDetector:
    """One with_mask box on even frames, one without_mask box on odd frames (by call count)."""

    label_map = {1: "with_mask", 2: "without_mask"}

    def __init__(self, delay_s: float = 0.0):
        self.calls, self.delay_s = 0, delay_s

    def detect(self, rgb):
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
    assert time.perf_counter() - t < 1.5


def test_window_without_display_does_not_abort(capsys):
    if gui_available():
        pytest.skip("this machine has a GUI backend and a display")
    s = run_live(FakeDetector(), frames(3), display="window")
    assert s.frames == 3
    assert "no display" in capsys.readouterr().err


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
    started, release = threading.Event(), threading.Event()
    msgs = []

    def slow_alert(msg):
        msgs.append(msg)
        started.set()
        release.wait(2)

    hook = AlertHook(slow_alert, classes=["without_mask"], cooldown_s=10)
    bare = Detections(np.zeros((1, 4), np.float32), np.array([2]), np.array([0.9], np.float32), ["without_mask"])
    masked = Detections(np.zeros((1, 4), np.float32), np.array([1]), np.array([0.9], np.float32), ["with_mask"])
    t = time.perf_counter()
    assert hook(bare, now=100.0) is True
    assert time.perf_counter() - t < 0.1  # did not wait for the slow callback
    assert started.wait(1)
    assert hook(bare, now=105.0) is False  # cooldown
    assert hook(masked, now=200.0) is False  # not an alert class
    release.set()
    time.sleep(0.05)
    assert hook(bare, now=200.0) is True and hook.count == 2
    assert "without_mask" in msgs[0]


def test_shared_video_frames_and_size(tmp_path):
    video = SHARED / "data" / "video" / "street-masks.mp4"
    if not video.exists():
        pytest.skip("../shared/data/video is absent")
    import cv2

    s = run_live(FakeDetector(), video, display="none", output_video=tmp_path / "o.mp4", max_frames=40)
    assert s.frames == 40
    cap = cv2.VideoCapture(str(tmp_path / "o.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 40
    assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (1366, 768)
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(30, abs=0.5)
    cap.release()
