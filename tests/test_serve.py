"""The live monitor (mask_od.monitor, mask_od.serve, mask_od.track): people tracked on a generated video with known tracks, a source
that dies and comes back, a viewer that stops reading, and the safety rules (bind, token, path-like inputs)."""

import contextlib
import dataclasses
import json
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from mask_od.detections import Detections
from mask_od.monitor import Monitor, ServeConfig
from mask_od.serve import ServeError, validate_config
from mask_od.track import PersonTracker, TrackerConfig

LABELS = {1: "with_mask", 2: "without_mask", 3: "mask_weared_incorrect"}
W, H, N = 192, 144, 60  # the generated video: 60 frames at 30 fps


def known_tracks() -> list[list[tuple[str, str, tuple[int, int, int, int]]]]:
    """Per frame: (person, class the detector reports, pixel xyxy). A (with_mask) crosses left to right, B
    (without_mask) right to left and is missed in frames 10-11; C (mask worn wrong) leaves the view in frames 15-27 and
    comes back where it left. The detector is wrong now and then: A called without_mask in frames 20-21, C with_mask
    in frames 3 and 30."""
    out = []
    for t in range(N):
        f = []
        ax = 2 + 2 * t
        f.append(("A", "without_mask" if t in (20, 21) else "with_mask", (ax, 5, ax + 28, 39)))
        if t not in (10, 11):
            bx = 160 - 2 * t
            f.append(("B", "without_mask", (bx, 100, bx + 28, 134)))
        if not 15 <= t <= 27:
            cx = 80 + (t % 3)
            f.append(("C", "with_mask" if t in (3, 30) else "mask_weared_incorrect", (cx, 52, cx + 28, 86)))
        out.append(f)
    return out


class TruthDetector:
    """Reports the known boxes of frame k at its k-th call (a file source hands over every frame, in order)."""

    label_map = LABELS

    def __init__(self, truth=None, delay_s: float = 0.0):
        self.truth, self.calls, self.delay_s = truth, 0, delay_s

    def predict(self, rgb):
        time.sleep(self.delay_s)
        h, w = rgb.shape[:2]
        rows = self.truth[self.calls] if self.truth and self.calls < len(self.truth) else []
        self.calls += 1
        ids = {v: k for k, v in LABELS.items()}
        boxes = [[y0 / h, x0 / w, y1 / h, x1 / w] for _, _, (x0, y0, x1, y1) in rows]
        return Detections.from_arrays(np.array(boxes, np.float32).reshape(-1, 4), [ids[c] for _, c, _ in rows],
                                      np.full(len(rows), 0.9, np.float32), LABELS)


def write_known_video(path: Path) -> Path:
    import cv2

    from mask_od.synthetic import _draw_face

    kind = {"A": "with_mask", "B": "without_mask", "C": "mask_weared_incorrect"}
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (W, H))
    for rows in known_tracks():
        img = np.full((H, W, 3), 90, np.uint8)
        for who, _, box in rows:
            _draw_face(img, box, kind[who], np.random.default_rng(ord(who)))
        writer.write(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def wait_for(check, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if value := check():
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def test_known_tracks_give_unique_people_and_one_event_per_bare_face(tmp_path):
    video = write_known_video(tmp_path / "known.mp4")
    cfg = ServeConfig(sources=[str(video)], event_log=str(tmp_path / "events.jsonl"), record_dir=str(tmp_path / "rec"),
                      max_events=1)  # events and crops rotate in memory; the log keeps them all
    alerts = []
    m = Monitor(cfg, TruthDetector(known_tracks()), alert=lambda det: alerts.append(det.names))
    m.start()
    try:
        wait_for(lambda: m.state(0) == "ended", 30, "the video to play once")
        stats = m.stats()

        def changing(*_):  # the detector thread changes the tracker's dicts while it tracks: stats never iterates them
            raise RuntimeError("dictionary changed size during iteration")

        m.trackers[0].unique_counts = changing
        assert m.stats()["unique_people"] == stats["unique_people"]  # the snapshot the detector thread made
    finally:
        written = m.close()
    assert stats["unique_people"] == {"with_mask": 1, "without_mask": 1, "mask_weared_incorrect": 1}, stats
    assert stats["people"] == 3 and stats["compliance"] == pytest.approx(1 / 3, abs=1e-3)
    assert stats["sources"][0]["frames_read"] == N and stats["sources"][0]["state"] == "ended"
    events = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert sorted(e["class"] for e in events) == ["mask_weared_incorrect", "without_mask"], events
    assert len({e["track_id"] for e in events}) == 2 and [e["id"] for e in events] == [1, 2]
    assert sorted(alerts) == [["mask_weared_incorrect"], ["without_mask"]]
    assert [e["id"] for e in m.events] == [2] and list(m.crops) == [2] and stats["events"] == 2
    import cv2

    crop = cv2.imdecode(np.frombuffer(m.crops[2], np.uint8), cv2.IMREAD_COLOR)  # the face, with a margin
    assert crop is not None and 34 <= crop.shape[0] <= 50 and 28 <= crop.shape[1] <= 40, crop.shape
    assert sorted(written) == sorted([str(tmp_path / "events.jsonl"), str(tmp_path / "rec" / "source0.mp4")])
    assert not list(tmp_path.rglob(".*tmp*"))


@pytest.mark.slow
def test_street_video_gives_two_people_not_hundreds():
    from conftest import need_shared

    from mask_od.detect import Detector
    from mask_od.shipped import default_live_model

    video = need_shared("data", "video", "street-masks.mp4")
    m = Monitor(ServeConfig(sources=[str(video)]), Detector(default_live_model(), score_threshold=0.3))
    m.start()
    try:
        wait_for(lambda: m.state(0) == "ended", 120, "the street video to play once")
        s = m.stats()
    finally:
        m.close()
    assert s["unique_people"] == {"with_mask": 2, "without_mask": 0, "mask_weared_incorrect": 0} and s["events"] == 0, s


def test_tracker_counts_a_person_once_within_lost_s_and_again_after():
    tr = PersonTracker(LABELS, TrackerConfig(lost_s=1.0, fps=30, min_frames=3))
    box = np.array([[0.3, 0.3, 0.6, 0.5]], np.float32)
    seen = Detections.from_arrays(box, [2], [0.9], LABELS)
    none = Detections.from_arrays(np.zeros((0, 4)), [], [], LABELS)
    ids = []  # the track id in each visit (a new track shows from its 3rd frame)
    for gap in (20, 45, 0):  # away for 20 frames (< 30): the same person; then for 45 (> 30): a new one
        ids.append({int(i) for _ in range(10) for i in tr.update(seen, (100, 100)).track_ids})
        for _ in range(gap):
            assert len(tr.update(none, (100, 100)).track_ids) == 0
    assert len(ids[0]) == 1 and ids[1] == ids[0] and len(ids[2]) == 1 and ids[2] != ids[0]
    assert tr.unique_counts() == {"with_mask": 0, "without_mask": 2, "mask_weared_incorrect": 0}
    assert len(tr.people) == 1  # the first one was forgotten (folded into the totals)


def test_a_dead_source_is_retried_and_shown_down(tmp_path):
    import shutil

    later = tmp_path / "late.mp4"
    cfg = ServeConfig(sources=[str(later)], retry_max_s=1.0)
    m = Monitor(cfg, TruthDetector())
    m.start()
    try:
        s = wait_for(lambda: (st := m.stats()["sources"][0])["state"] == "down" and st, 10, "the source shown down")
        assert "no such video file" in s["error"] and s["retry_in_s"] is not None
        shutil.copy(write_known_video(tmp_path / "known.mp4"), later)  # the source comes back
        wait_for(lambda: m.state(0) == "ended", 30, "the source to come back and play")
        assert m.readers[0].restarts >= 1 and m.processed[0] == N
    finally:
        m.close()


@contextlib.contextmanager
def running(cfg: ServeConfig, detector):
    """The monitor served from a thread on a free loopback port; yields (base URL without the last slash, monitor)."""
    from mask_od.serve import BackgroundMonitor

    bg = BackgroundMonitor(dataclasses.replace(cfg, port=0), detector)
    try:
        yield bg.url.rstrip("/"), bg.monitor
    finally:
        bg.stop()


def endless(h=240, w=320):
    rng = np.random.default_rng(0)
    noise = [(rng.random((h, w, 3)) * 255).astype(np.uint8) for _ in range(4)]  # noise: large JPEGs fill buffers fast
    k = 0
    while True:
        yield noise[k % 4]
        k += 1


def test_a_viewer_that_stops_reading_never_stalls_detection():
    cfg = ServeConfig(sources=[endless()], jpeg_quality=95)
    with running(cfg, TruthDetector(delay_s=0.002)) as (url, m):
        host, port = url[7:].split(":")
        stuck = socket.create_connection((host, int(port)))
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.sendall(b"GET /stream/0.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # and never reads
        time.sleep(0.5)
        before = m.processed[0]
        wait_for(lambda: m.processed[0] > before + 150, 30, "150 more frames while a viewer is stuck")  # > 10 MB unread
        stuck.close()


def get(url: str, headers: dict | None = None):
    """(status, body bytes, headers) without following redirects or raising."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as r:
            return r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers


def raw_get(url: str, target: str, extra_headers: str = "", host_header: str | None = None) -> tuple[int, bytes]:
    """A request line sent as is (urllib would normalise ../ away); the reply's status and bytes."""
    host, port = url[7:].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: {host_header or url[7:]}\r\n{extra_headers}Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1]), data


def test_token_is_needed_everywhere_and_path_like_inputs_are_refused(tmp_path):
    token = "t0ken-for-the-test-1234"
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0 SECRET")
    cfg = ServeConfig(sources=[endless(96, 128)], token=token)
    with running(cfg, TruthDetector()) as (url, m):
        wait_for(lambda: m.hub.frames[0][1] is not None, 20, "a first frame")
        endpoints = ["/", "/api/stats", "/api/events", "/api/health", "/api/frame/0.jpg", "/api/crops/1.jpg", "/stream/0.mjpg",
                     "/api/updates", "/nothing"]
        for ep in endpoints:
            for headers in ({}, {"Authorization": "Bearer wrong-token-wrong-token"}, {"Cookie": "mask_od_token=wrong"}):
                status, body, _ = get(url + ep, headers)
                assert status == 401 and b"\xff\xd8" not in body and b"with_mask" not in body, (ep, headers, status)
        assert get(url + "/api/stats?token=" + token)[0] == 401  # ?token= opens the page only
        status, body, h = get(url + "/api/frame/0.jpg", {"Authorization": f"Bearer {token}"})
        assert status == 200 and body[:2] == b"\xff\xd8"
        status, body, h = get(url + "/?token=" + token)
        assert status == 200 and b"mask_od monitor" in body and "HttpOnly" in h["set-cookie"]
        cookie = {"Cookie": h["set-cookie"].split(";")[0]}
        assert json.loads(get(url + "/api/stats", cookie)[1])["frames"] > 0
        bad = [f"{ep}/../../{secret}" for ep in endpoints] + [
            "/api/crops/..%2F..%2Fsecret.txt", "/api/crops/%2Fetc%2Fpasswd.jpg", "/api/frame/..%2f0.jpg", "/stream/0.mjpg%00",
            f"/api/crops/{secret}", "/api/crops/-1.jpg", "/api/frame/7.jpg", "/api/crops/1.txt", "/stream/..%5c..%5cx.mjpg",
            f"/api/events?after=../../{secret.name}", f"/api/stats?path={secret}", "/api/events?limit=%2Fetc", "/?file=/etc/passwd",
            "/static/../../etc/passwd", "/api/frame/0.jpg?token=../../x"]
        for target in bad:  # without and with the token: refused, never a file, never a frame
            for auth in ("", f"Authorization: Bearer {token}\r\n"):
                status, data = raw_get(url, target, auth)
                assert 400 <= status < 500 and b"SECRET" not in data and b"\xff\xd8" not in data, (target, auth, status)
                if auth:
                    assert status in (400, 404, 422), (target, status)


def test_serve_summary_reads_plainly():
    from mask_od.serve import ServeSummary

    one = ServeSummary(1, 2.0, {"with_mask": 1}, 1, 1, [], "stopped")
    assert str(one) == "1 frame in 2.0 s; people: with_mask 1; 1 event, 1 alert; stopped.", str(one)
    assert str(ServeSummary(3, 2.0, {}, 0, 2, [], "stopped")).startswith("3 frames in 2.0 s; people: none; 0 events, 2 alerts;")


def test_source_names_shown_without_credentials():
    from mask_od.monitor import source_name

    assert source_name("rtsp://admin:pw@10.0.0.5:554/live?key=abc") == "rtsp://10.0.0.5:554/live?…"
    assert source_name(0) == "camera 0" and source_name("clip.mp4") == "clip.mp4"


def test_non_loopback_bind_without_token_refuses_to_start(capsys):
    with pytest.raises(ServeError, match="0.0.0.0.*token"):
        validate_config(ServeConfig(host="0.0.0.0"))
    with pytest.raises(ServeError) as e:  # each bad setting named with what is allowed, and only those
        validate_config(ServeConfig(sources=["v.mp4"], port=70000, jpeg_quality=0))
    assert str(e.value) == ("bad setting: port 70000 (allowed: 0 to 65535, 0 takes a free port); jpeg_quality 0 "
                            "(allowed: 1 to 100)"), str(e.value)
    with pytest.raises(ServeError, match="token must be"):
        validate_config(ServeConfig(host="0.0.0.0", token="short"))
    validate_config(ServeConfig(host="0.0.0.0", token="a-long-enough-token-123"))
    validate_config(ServeConfig(host="::1"))
    assert ServeConfig(host="[::1]").host == "::1"  # as a URL writes it
    validate_config(ServeConfig(host="[::1]"))
    with pytest.raises(ServeError, match=r"refusing to bind \[::\]: any address"):
        validate_config(ServeConfig(host="[::]"))
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import serve as script

    t = time.perf_counter()
    assert script.main(["--source", "0", "--host", "192.168.1.5"]) == 2
    assert "refusing to bind 192.168.1.5" in capsys.readouterr().err and time.perf_counter() - t < 5  # no model loaded


def test_a_port_in_use_is_a_clear_error(tmp_path, capfd):
    """One error, before anything starts (no event log begun), and no second line from uvicorn ("[Errno 98] ...")."""
    from mask_od.serve import BackgroundMonitor, serve

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ServeError, match=f"could not serve on 127.0.0.1:{port}"):
            serve(ServeConfig(sources=[endless(48, 64)], port=port, event_log=str(tmp_path / "ev.jsonl")), TruthDetector())
        assert not list(tmp_path.iterdir())  # nothing started, nothing written
        with pytest.raises(ServeError, match=f"could not serve on 127.0.0.1:{port}"):
            BackgroundMonitor(ServeConfig(sources=[endless(48, 64)], port=port), TruthDetector())
        import sys

        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
        import serve as script

        t = time.perf_counter()  # the script asks for the port before it loads a model: one line, at once
        assert script.main(["--source", "0", "--port", str(port)]) == 2 and time.perf_counter() - t < 5
    out, err = capfd.readouterr()
    assert "Errno" not in out + err and "address already in use" not in out + err, (out, err)
    assert err.strip() == f"error: could not serve on 127.0.0.1:{port} (in use, or not an address of this machine)", err
    assert not out.strip(), out  # errors go to stderr, as argparse's do
    assert "XNNPACK" not in err, err  # no model was loaded


def test_notebook_step_waits_for_a_file_source_and_stops_on_a_camera_bound(tmp_path, capsys):
    """The notebook's step 10: the page URL printed (headless), the wait ends when the video has played once, and a
    source that never ends (a camera) is stopped after MONITOR_SECONDS."""
    from mask_od import notebook as nb
    from mask_od.serve import BackgroundMonitor

    video = write_known_video(tmp_path / "known.mp4")
    bg = BackgroundMonitor(ServeConfig(sources=[str(video)], port=0), TruthDetector(known_tracks()))
    try:
        nb.show_monitor(bg, headless=True)
        assert bg.url in capsys.readouterr().out
        assert nb.wait_for_monitor(bg, 30) == "every source ended"
        assert bg.monitor.processed[0] == N
    finally:
        summary = bg.stop()
    assert summary.unique_people == {"with_mask": 1, "without_mask": 1, "mask_weared_incorrect": 1}
    bg = BackgroundMonitor(ServeConfig(sources=[endless(48, 64)], port=0), TruthDetector())
    try:
        t0 = time.monotonic()
        assert nb.wait_for_monitor(bg, 1.5) == "1.5 s passed"
        assert 1.4 <= time.monotonic() - t0 < 5
    finally:
        bg.stop()


def test_without_a_token_only_loopback_names_are_answered():
    """DNS rebinding: a web page on evil.example that resolves to 127.0.0.1 sends Host: evil.example; without a token
    the monitor answers only to 127.x, localhost and [::1] (any port)."""
    from mask_od.serve import host_is_loopback

    with running(ServeConfig(sources=[endless(48, 64)]), TruthDetector()) as (url, m):
        wait_for(lambda: m.hub.frames[0][1] is not None, 20, "a first frame")
        port = url.rsplit(":", 1)[1]
        for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.nip.io", "192.168.1.5", "", "[::2]:80", "localhost.evil"):
            for target in ("/", "/api/stats", "/api/frame/0.jpg", "/stream/0.mjpg"):
                status, data = raw_get(url, target, host_header=host or " ")
                assert status == 403 and b"\xff\xd8" not in data and b"unique_people" not in data, (host, target, status)
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "127.0.0.1", f"[::1]:{port}", "LOCALHOST"):
            assert raw_get(url, "/api/health", host_header=host)[0] == 200, host
        assert get(url + "//api/health")[0] == 200  # the page's URL ends in "/": url + "/api/health" works too
        for target in ("//../api/health", "///api/crops/..%2F..%2Fx.jpg", "//etc/passwd"):
            assert raw_get(url, target)[0] in (400, 404), target
    assert not host_is_loopback("[::1") and host_is_loopback("127.0.0.2:9")


def stream_bytes(url: str, seconds: float) -> tuple[bytes, bool]:
    """What GET /stream/0.mjpg sends within ``seconds`` (headers dropped), and whether the response ended by then."""
    host, port = url[7:].split(":")
    data, t0, ended = b"", time.monotonic(), False
    with socket.create_connection((host, int(port)), timeout=1) as s:
        s.sendall(f"GET /stream/0.mjpg HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
        while time.monotonic() - t0 < seconds:
            try:
                got = s.recv(65536)
            except socket.timeout:
                continue
            if not got:
                ended = True
                break
            data += got
    rest, body = data.split(b"\r\n\r\n", 1)[1], b""
    while b"\r\n" in rest:  # chunked transfer: <size in hex>\r\n<data>\r\n ... 0\r\n\r\n
        size, rest = rest.split(b"\r\n", 1)
        if len(rest) < int(size, 16):
            break
        body, rest = body + rest[:int(size, 16)], rest[int(size, 16) + 2:]
    return body, ended


def test_an_ended_video_keeps_its_last_frame_visible_and_counts_no_one_now(tmp_path):
    """Chromium shows an MJPEG part only once the next part begins or the response ends, so the stream of a video
    that has ended sends its last frame and ends: a page opened after the end still shows it. No one is counted
    "now" once a source has ended."""
    video = write_known_video(tmp_path / "known.mp4")
    with running(ServeConfig(sources=[str(video)]), TruthDetector(known_tracks())) as (url, m):
        wait_for(lambda: m.state(0) == "ended", 30, "the video to play once")
        body, ended = stream_bytes(url, 10)
        assert ended and body.count(b"\xff\xd8") == 1, (ended, body.count(b"\xff\xd8"))  # its last frame, then the end
        assert body.split(b"--frame")[1].split(b"\r\n\r\n", 1)[1][:2] == b"\xff\xd8"
        stats = json.loads(get(url + "/api/stats")[1])
        assert stats["counts_now"] == {n: 0 for n in LABELS.values()} and stats["sources"][0]["people_now"] == 0
        assert stats["unique_people"]["without_mask"] == 1  # the counts since start stay


def test_a_stalled_source_has_its_last_frame_sent_again_so_it_shows():
    """A camera that stops sending (no error, no end) keeps its stream open; its last frame is sent once more after
    a second, so the browser shows that frame and not the one before."""
    import threading

    release = threading.Event()

    def stalls():
        for k in range(3):
            yield np.full((48, 64, 3), 60 * k, np.uint8)
        release.wait(30)

    with running(ServeConfig(sources=[stalls()]), TruthDetector()) as (url, m):
        try:
            wait_for(lambda: m.processed[0] == 3, 20, "three frames")
            body, ended = stream_bytes(url, 3)
            assert not ended and body.count(b"\xff\xd8") == 2, (ended, body.count(b"\xff\xd8"))
            first, again = [p.split(b"\r\n\r\n", 1)[1] for p in body.split(b"--frame")[1:3]]
            assert first == again == m.hub.frames[0][1] + b"\r\n"
        finally:
            release.set()


def test_a_dead_source_is_said_in_the_terminal_and_in_health(tmp_path, capfd):
    missing = tmp_path / "gone.mp4"
    with running(ServeConfig(sources=[str(missing)], retry_max_s=0.2), TruthDetector()) as (url, m):
        wait_for(lambda: m.readers[0].state == "down" and m.readers[0].restarts >= 2, 20, "the source retried")
        status, body, _ = get(url + "/api/health")
        health = json.loads(body)
        assert status == 503  # unhealthy says so in its status too
        err = capfd.readouterr().err
        assert err.count("source 0 (") == 1 and "gone.mp4" in err and "retrying" in err  # once, not at every retry
        assert health["ok"] is False and health["sources"] == ["down"] and "gone.mp4" in health["source_errors"][0]
        write_known_video(missing)  # the file appears: the next retry plays it, and the terminal says so
        wait_for(lambda: m.state(0) == "ended", 30, "the source back, played once")
        assert get(url + "/api/health")[0] == 200  # a video that ended, alone, is healthy
    out, err = capfd.readouterr()
    assert f"source 0 ({missing}) up again" in err and f"source 0 ({missing}) ended after {N} frames" in out, (out, err)


class HeldDetector(TruthDetector):
    """Blocks inside its ``hold_at``-th call until ``release`` is set (a detector still busy with a frame)."""

    def __init__(self, hold_at: int):
        super().__init__()
        self.hold_at, self.holding, self.release = hold_at, threading.Event(), threading.Event()

    def predict(self, rgb):
        if self.calls == self.hold_at:
            self.holding.set()
            assert self.release.wait(20)
        return super().predict(rgb)


def test_a_source_shows_ended_only_once_its_last_frame_is_processed(tmp_path):
    """The reader of a file ends as soon as it has read the last frame; the detector may still be on it. The page, the
    stats and health said "ended" then, with a frame count one short (CI: a folder of 3 photos "ended" at 2 frames)."""
    video = write_known_video(tmp_path / "known.mp4")
    det = HeldDetector(hold_at=N - 1)
    with running(ServeConfig(sources=[str(video)]), det) as (url, m):
        assert det.holding.wait(30), "the detector never reached the last frame"
        wait_for(lambda: m.readers[0].state == "ended", 10, "the reader to end")  # it has read every frame
        s = m.stats()["sources"][0]
        health = json.loads(get(url + "/api/health")[1])
        assert s["state"] == "up" and s["frames_read"] == N and s["frames_processed"] == N - 1, s  # not ended yet
        assert health["sources"] == ["up"] and health["ok"] is True
        det.release.set()
        wait_for(lambda: m.stats()["sources"][0]["state"] == "ended", 10, "the last frame processed")
        s = m.stats()["sources"][0]
        assert s["frames_processed"] == N and s["people_now"] == 0, s
        assert json.loads(get(url + "/api/health")[1])["sources"] == ["ended"]


def test_serving_leaves_the_process_logging_alone(tmp_path):
    """uvicorn's default logging set-up (dictConfig) closed every handler of the process: TensorFlow's absl handler
    closed the stream it held, which under pytest was the capture file (CI: 89 errors on one worker after it)."""
    import io
    import logging

    from absl import logging as absl_logging

    stream = io.StringIO()
    handler = absl_logging.PythonHandler(stream)  # closes its stream on close() unless it is sys.stderr/stdout
    logger = logging.getLogger("mask_od.test.bystander")
    logger.addHandler(handler)
    try:
        with running(ServeConfig(sources=[str(write_known_video(tmp_path / "known.mp4"))]), TruthDetector()) as (url, m):
            assert get(url + "/api/health")[0] == 200
        assert not stream.closed and handler in logger.handlers and handler.stream is stream
    finally:
        logger.removeHandler(handler)


def test_health_is_503_when_a_source_is_down_and_the_others_have_ended(tmp_path, capfd):
    video = write_known_video(tmp_path / "known.mp4")
    with running(ServeConfig(sources=[str(video), str(tmp_path / "typo.mp4")], retry_max_s=0.2), TruthDetector()) as (url, m):
        wait_for(lambda: [m.state(i) for i in range(2)] == ["ended", "down"], 30, "one ended, one down")
        status, body, _ = get(url + "/api/health")
    assert status == 503 and json.loads(body)["ok"] is False  # nothing delivers frames and one source is broken
    assert "source 0 (" in capfd.readouterr().out  # "… ended after N frames" is said


def test_bad_outputs_hosts_and_tracker_settings_are_refused_before_anything_starts(tmp_path):
    """A folder as event log was found only at the end, losing every event; a record_dir that is a file gave a raw
    OSError after the model loaded; out-of-range tracker settings ran and counted no one."""
    from mask_od.fileio import OutputOnInputError

    for overwrite in (False, True):
        with pytest.raises(OutputOnInputError, match="is a folder"):
            validate_config(ServeConfig(sources=["v.mp4"], event_log=str(tmp_path), overwrite=overwrite))
    (tmp_path / "afile").write_text("x")
    from mask_od.fileio import OutputPathError

    with pytest.raises(OutputPathError, match="afile is a file, not a folder"):
        validate_config(ServeConfig(sources=["v.mp4"], record_dir=str(tmp_path / "afile")))
    for host in ("[::1", "", "nonsense host"):
        with pytest.raises(ServeError, match="is not an address"):
            validate_config(ServeConfig(host=host))
    with pytest.raises(ServeError) as e:
        validate_config(ServeConfig(sources=["v.mp4"], tracker=TrackerConfig(activation_threshold=1.5, lost_s=-1, min_frames=0)))
    assert all(k in str(e.value) for k in ("activation_threshold 1.5", "lost_s -1", "min_frames 0")), str(e.value)


def test_token_files_and_alert_classes_are_checked(tmp_path, capsys):
    import sys

    from mask_od.live import AlertClassError, default_alert_classes
    from mask_od.serve import read_token
    from mask_od.track import BARE

    (tmp_path / "empty.txt").write_text("\n")
    (tmp_path / "t.txt").write_text(" a-long-enough-token-123\n")
    assert read_token(tmp_path / "t.txt") == "a-long-enough-token-123"
    for path, said in ((tmp_path, "is a folder"), (tmp_path / "empty.txt", "is empty"), (tmp_path / "gone.txt", "could not be read")):
        with pytest.raises(ServeError, match=f"token file {path} {said}"):
            read_token(path)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import serve as script

    with pytest.raises(SystemExit):  # argparse: one token, not two
        script.main(["--token", "a-long-enough-token-123", "--token_file", str(tmp_path / "t.txt")])
    assert "not both" in capsys.readouterr().err
    assert script.main(["--host", "0.0.0.0", "--token_file", str(tmp_path)]) == 2
    assert "token file" in capsys.readouterr().err
    for bad in (["--score_threshold", "2"], ["--num_threads", "0"], ["--alert_cooldown_s", "-1"]):
        with pytest.raises(SystemExit):
            script.main(bad)
        err = capsys.readouterr().err
        assert f"argument {bad[0]}: {bad[1]} is " in err, (bad, err)  # "2 is not from 0 to 1", "0 is less than 1"
    # serve alerts on events (bare faces): another class, or one the model lacks, would never fire
    with pytest.raises(AlertClassError, match="'bogus' not among the model's classes"):
        default_alert_classes(["bogus"], LABELS, BARE, BARE)
    with pytest.raises(AlertClassError, match="'with_mask' would never fire: events"):
        default_alert_classes(["with_mask"], LABELS, BARE, BARE, "events are for bare faces")
    assert default_alert_classes(None, LABELS, BARE, BARE) == list(BARE)
    assert default_alert_classes(["mask_weared_incorrect"], LABELS, ("without_mask",)) == ["mask_weared_incorrect"]  # live: any class
    assert default_alert_classes(None, {1: "helmet", 2: "no_helmet"}, ("without_mask",)) == []
    assert "alerts off: the model has no class without_mask" in capsys.readouterr().out


def test_a_background_monitor_left_running_is_stopped_when_python_exits(tmp_path):
    """Without stop(), the process aborted at exit (threads killed mid-write) and the event log stayed a temp file."""
    import subprocess
    import sys

    script = f"""
import time
import numpy as np
from mask_od.detections import Detections
from mask_od.monitor import ServeConfig
from mask_od.serve import BackgroundMonitor

class Nobody:
    label_map = {LABELS!r}
    def predict(self, rgb):
        return Detections.from_arrays(np.zeros((0, 4), np.float32), [], np.zeros(0, np.float32), self.label_map)

def frames():
    while True:
        yield np.zeros((48, 64, 3), np.uint8)

m = BackgroundMonitor(ServeConfig(sources=[frames()], port=0, event_log={str(tmp_path / 'ev.jsonl')!r}), Nobody())
time.sleep(1.0)
print("leaving without stop()", flush=True)
"""
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                       cwd=Path(__file__).resolve().parents[1])
    assert p.returncode == 0 and "leaving without stop()" in p.stdout, (p.returncode, p.stdout, p.stderr[-2000:])
    assert [f.name for f in tmp_path.iterdir()] == ["ev.jsonl"], list(tmp_path.iterdir())  # finished, no temp file
    from mask_od.serve import BackgroundMonitor

    with BackgroundMonitor(ServeConfig(sources=[endless(48, 64)], port=0), TruthDetector()) as m:
        assert get(m.url + "api/health")[0] == 200
    assert m.stop() is m.stop() and m.monitor.stopping.is_set()  # stopped by the block; the same summary again


def test_a_stop_signal_never_takes_a_lock_in_its_handler(tmp_path):
    """Event.set() takes a lock: a second Ctrl-C arriving while the first one's handler was inside it waited on that lock
    forever (a fresh-user try hung serve.py 2 times in 10 bursts of SIGINT; only SIGKILL ended it). The handler now
    leaves set() to another thread."""
    import signal
    import threading

    from mask_od.serve import _server

    class Recording(threading.Event):
        def set(self):
            self.by = threading.current_thread()
            super().set()

    monitor = Monitor(ServeConfig(sources=[endless(48, 64)]), TruthDetector())
    monitor.stopping = Recording()
    server = _server(ServeConfig(sources=[endless(48, 64)], port=0), monitor, lambda url: None)
    server.handle_exit(signal.SIGINT, None)
    assert monitor.stopping.wait(5) and monitor.stopping.by is not threading.current_thread() and server.should_exit


def test_outputs_under_a_file_and_endless_settings_are_refused(tmp_path, monkeypatch, capsys):
    import sys

    from mask_od.cli import at_least
    from mask_od.fileio import OutputPathError
    from mask_od.live import run_live
    from mask_od.serve import is_loopback

    (tmp_path / "afile").write_text("x")
    (tmp_path / "src").mkdir()
    for cfg in (ServeConfig(sources=["v.mp4"], record_dir=str(tmp_path / "afile" / "sub")),
                ServeConfig(sources=["v.mp4"], event_log=str(tmp_path / "afile" / "ev.jsonl"))):
        with pytest.raises(OutputPathError, match="afile is a file, not a folder"):
            validate_config(cfg)
    with pytest.raises(OutputPathError, match="afile is a file, not a folder"):
        run_live(TruthDetector(), str(tmp_path / "src"), display="none", output_video=tmp_path / "afile" / "out.mp4")
    with pytest.raises(ServeError, match="lost_s inf"):
        validate_config(ServeConfig(sources=["v.mp4"], tracker=TrackerConfig(lost_s=float("inf"))))
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match="not a finite number"):
        at_least(0.01, float)("inf")
    assert is_loopback("LOCALHOST") and is_loopback("::1") and not is_loopback("localhost.evil")
    with pytest.raises(ServeError, match=r"and it holds ' '"):
        validate_config(ServeConfig(sources=["v.mp4"], token="a token with spaces in it"))
    with pytest.raises(ServeError, match="and it has 5 characters"):
        validate_config(ServeConfig(sources=["v.mp4"], token="short"))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import serve as script

    def interrupted(*a):
        raise KeyboardInterrupt

    monkeypatch.setattr("mask_od.shipped.live_model", interrupted)  # Ctrl-C while the model loads
    assert script.main(["--source", "0", "--port", "0"]) == 130
    assert capsys.readouterr().out.strip().endswith("stopped by Ctrl-C before it started")


def test_a_looped_file_stays_up_between_passes(monkeypatch):
    """A looped file starting its next pass is still "up": it was shown "connecting" for a moment on each pass, so a
    page (or a test) that looked then saw a healthy source as not yet connected."""
    import threading

    from mask_od.monitor import SourceReader

    passes, hold = [], threading.Event()

    def frames(source):
        passes.append(source)
        if len(passes) == 2:
            hold.wait(10)  # the second pass is slow to give its first frame
        yield np.zeros((8, 8, 3), np.uint8)

    monkeypatch.setattr("mask_od.monitor.iter_frames", frames)
    reader = SourceReader(0, "clip.mp4", loop=True, retry_max_s=1.0, wake=threading.Event())
    assert reader.state == "starting"
    reader.start()
    try:
        wait_for(lambda: reader.take() is not None, 5, "the first pass's frame")
        wait_for(lambda: len(passes) == 2, 5, "the second pass to start")
        assert reader.restarts == 1 and reader.state == "up" and reader.error is None
    finally:
        hold.set()
        reader.stop()


def test_a_source_being_retried_stays_down_and_unhealthy_until_a_frame_comes(tmp_path):
    """A dead stream's retry waits up to its open timeout; it was shown "connecting" meanwhile, and /api/health said
    200 for that part of every retry cycle."""
    import threading

    calls, hold = [], threading.Event()

    def frames(source):
        calls.append(source)
        if len(calls) == 1:
            raise SourceError("rtsp://cam/1: could not open")
        hold.wait(10)  # the retry is slow to connect
        for _ in range(1000):
            yield np.zeros((8, 8, 3), np.uint8)
            time.sleep(0.01)

    from mask_od.sources import SourceError

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("mask_od.monitor.iter_frames", frames)
        with running(ServeConfig(sources=["rtsp://cam/1"], retry_max_s=0.2), TruthDetector()) as (url, m):
            try:
                wait_for(lambda: len(calls) == 2, 10, "the retry to start")
                status, body, _ = get(url + "/api/health")
                assert (status, json.loads(body)["sources"]) == (503, ["down"]), body
                assert m.stats()["sources"][0]["retry_in_s"] == 0  # the page shows "down (retrying…)"
            finally:
                hold.set()
            wait_for(lambda: m.readers[0].state == "up", 10, "the source up once a frame comes")
            assert get(url + "/api/health")[0] == 200


def test_a_folder_with_a_corrupt_photo_skips_it_and_plays_once(tmp_path, capfd):
    """One photo that cannot be decoded is skipped with a line naming it (once, not on each looped pass): the folder
    used to fail there, and the monitor restarted it from its first photo again and again (each pass counted the same
    people anew). The notebook's photo step names each picture by its own file, not by a neighbour's."""
    import cv2

    from mask_od.sources import SourceError, iter_frames

    photos = tmp_path / "photos"
    photos.mkdir()
    for k in range(3):
        cv2.imwrite(str(photos / f"{k}.jpg"), np.full((48, 64, 3), 40 * k, np.uint8))
    (photos / "1b.jpg").write_bytes(b"not a jpeg")
    (photos / "notes.txt").write_text("not an image")
    assert len(list(iter_frames(photos))) == 3
    said = capfd.readouterr().out
    assert f"{photos / '1b.jpg'}: cannot decode image (corrupt or not an image), skipped" in said
    assert f"{photos}: skipped 1 file(s) or folder(s) that are not images: notes.txt" in said
    with running(ServeConfig(sources=[str(photos)], loop=True), TruthDetector()) as (url, m):
        wait_for(lambda: m.readers[0].restarts >= 3, 20, "the looped folder to play three times")
        assert m.readers[0].error is None and m.readers[0].state == "up"
    said = capfd.readouterr().out
    assert said.count("1b.jpg") == said.count("notes.txt") == 0, said  # said once (above), not on every pass
    assert f"note: {photos}: each photo is one frame, and a person counts after 5 frames" in said  # so the user knows why
    from mask_od.serve import photo_folder_note

    assert photo_folder_note(ServeConfig(sources=[str(photos)], tracker=TrackerConfig(min_frames=1))) is None
    assert photo_folder_note(ServeConfig(sources=[str(write_known_video(tmp_path / "v.mp4"))])) is None
    with running(ServeConfig(sources=[str(photos)]), TruthDetector()) as (url, m):
        wait_for(lambda: m.stats()["sources"][0]["state"] == "ended", 20, "the folder to play once")
        assert m.processed[0] == 3 and m.readers[0].restarts == 0 and m.readers[0].error is None
    from mask_od.notebook import detect_photos  # the notebook's try-it step names each photo by its own file

    pngs = detect_photos(TruthDetector(), photos, tmp_path / "out")
    assert [p.name for p in pngs] == ["0.png", "1.png", "2.png"]
    assert [int(cv2.imread(str(p)).mean()) for p in pngs] == [0, 40, 80]
    for k in range(3):
        (photos / f"{k}.jpg").write_bytes(b"")
    with pytest.raises(SourceError, match="none of its 4 image"):
        list(iter_frames(photos))
