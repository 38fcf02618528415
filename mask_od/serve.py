"""A live mask-compliance monitor served to a browser by one process: frame sources (retried when they die) -> the
detector -> a tracker per source -> the annotated frame (latest wins), counts, unique people, events with face crops,
JSON and Server-Sent Events, over FastAPI + uvicorn; loopback only unless a token is set."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hmac
import ipaddress
import json
import re
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from mask_od.detections import Detections
from mask_od.errors import MaskODError
from mask_od.fileio import refuse_existing, replace_path, temp_sibling
from mask_od.sources import Source, SourceError, describe_source, is_live, iter_frames
from mask_od.track import PersonTracker, TrackerConfig

PAGE = Path(__file__).with_name("serve_page.html")
COOKIE = "mask_od_token"
MIN_TOKEN_LEN = 16
QUERY_KEYS = {"token": r"[A-Za-z0-9_\-.~]{1,256}", "after": r"-?[0-9]{1,12}", "limit": r"[0-9]{1,4}"}
SAFE_PATH = re.compile(r"/[A-Za-z0-9_\-/]*(\.(jpg|mjpg))?")


class ServeError(MaskODError, ValueError):
    """The monitor cannot start as asked (an unsafe bind, a bad setting); the message says what to change."""


@dataclasses.dataclass
class ServeConfig:
    """Everything the monitor needs but the detector. ``sources``: camera indexes, video files, image folders or
    ``rtsp://`` / ``http://`` URLs (any :data:`~mask_od.sources.Source`)."""

    sources: Sequence[Source] = (0,)
    host: str = "127.0.0.1"  # any other address needs a token
    port: int = 8000
    token: str | None = None  # with a token every request must carry it (Bearer header, cookie, or ?token= for the page)
    loop: bool = False  # play video files and folders again when they end (else once; counts stay readable after)
    record_dir: str | None = None  # annotated video per source, source0.mp4 ... (renamed into place at the end)
    event_log: str | None = None  # one JSON line per event, written under a temporary name, renamed at the end
    overwrite: bool = False
    max_events: int = 200  # events (with their face crops) kept in memory; older ones rotate out
    stream_width: int = 960  # frames sent to browsers are scaled down to at most this width (px)
    jpeg_quality: int = 80
    retry_max_s: float = 30.0  # a dead source is retried after 1, 2, 4 ... s, at most this long apart
    tracker: TrackerConfig = dataclasses.field(default_factory=TrackerConfig)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate_config(cfg: ServeConfig) -> None:
    """Refuse an unsafe or impossible setting before anything starts (no model loaded, no port bound)."""
    if not is_loopback(cfg.host) and not cfg.token:
        raise ServeError(f"refusing to bind {cfg.host}: any address but loopback (127.0.0.1) needs a token "
                         "(--token_file FILE, or --token), which every request must then carry")
    if cfg.token is not None and (len(cfg.token) < MIN_TOKEN_LEN or not re.fullmatch(QUERY_KEYS["token"], cfg.token)):
        raise ServeError(f"the token must be {MIN_TOKEN_LEN} to 256 characters of A-Z a-z 0-9 _ - . ~ "
                         "(python -c \"import secrets; print(secrets.token_urlsafe(24))\" makes one)")
    if not cfg.sources:
        raise ServeError("no source given")
    if not 0 <= cfg.port < 65536 or cfg.max_events < 1 or cfg.stream_width < 32 or not 1 <= cfg.jpeg_quality <= 100:
        raise ServeError(f"bad setting: port {cfg.port}, max_events {cfg.max_events}, stream_width {cfg.stream_width}, "
                         f"jpeg_quality {cfg.jpeg_quality}")
    for p in output_paths(cfg):
        refuse_existing(p, cfg.overwrite)


def output_paths(cfg: ServeConfig) -> list[Path]:
    out = [Path(cfg.record_dir) / f"source{i}.mp4" for i in range(len(cfg.sources))] if cfg.record_dir else []
    return out + ([Path(cfg.event_log)] if cfg.event_log else [])


def source_name(source: Source) -> str:
    """How a source is shown: a URL without its user, password and query."""
    return re.sub(r"\?.*", "?…", re.sub(r"://[^/@]*@", "://", describe_source(source)))


class SourceReader:
    """Reads one source in a thread. A camera or stream keeps only its newest frame (stale ones are counted in
    ``dropped``); a file or folder hands over every frame (it waits for the detector). A source that fails or (live)
    ends is retried with back-off and shown ``down`` meanwhile; a file ends once (``ended``) unless ``loop``."""

    def __init__(self, index: int, source: Source, loop: bool, retry_max_s: float, wake: threading.Event):
        self.index, self.source, self.name = index, source, source_name(source)
        self.live = is_live(source)
        self.replayable = isinstance(source, (int, str, Path))
        self.loop, self.retry_max_s, self._wake = loop, retry_max_s, wake
        self.state, self.error, self.retry_at = "starting", None, None
        self.read = self.dropped = self.restarts = 0
        self._slot = None
        self._lock = threading.Lock()
        self._taken = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"source-{index}")

    def start(self) -> None:
        self._thread.start()

    def _put(self, frame: np.ndarray) -> None:
        with self._lock:
            if self._slot is not None:
                if self.live:
                    self.dropped += 1
                else:
                    while self._slot is not None and not self._stop.is_set():
                        self._taken.wait(0.1)
            self._slot = (self.read, frame)
            self.read += 1
        self._wake.set()

    def take(self):
        """(frame number, BGR frame) or None when no new frame is waiting."""
        with self._lock:
            item, self._slot = self._slot, None
            self._taken.notify_all()
        return item

    def _run(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            self.state, got = "connecting", 0
            try:
                for frame in iter_frames(self.source):
                    self.state, self.error, self.retry_at, backoff = "up", None, None, 1.0
                    self._put(frame)
                    got += 1
                    if self._stop.is_set():
                        return
                if not got and self.replayable:  # else a looped empty file would spin
                    raise SourceError(f"{self.name}: no frame could be read (empty, or a codec OpenCV's FFmpeg lacks)")
                if not self.live and not (self.loop and self.replayable):
                    self.state = "ended"
                    return
                if not self.live:
                    self.restarts += 1
                    continue
                raise SourceError(f"{self.name}: no more frames (camera unplugged or stream closed)")
            except Exception as e:  # noqa: BLE001 - a dying source is retried, never ends the process
                self.error = str(e)[:300]
            if not self.replayable:
                self.state = "ended"
                return
            self.state, self.retry_at = "down", time.time() + backoff
            self._stop.wait(backoff)
            backoff = min(backoff * 2, self.retry_max_s)
            self.restarts += 1

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            self._taken.notify_all()
        self._thread.join(timeout=3.0)


class FrameHub:
    """The newest JPEG of each source and its sequence number. The detector publishes from its thread (never waits);
    viewers wait in the event loop for a newer one and skip what they were too slow for (latest frame wins)."""

    def __init__(self, n: int):
        self.frames: list[tuple[int, bytes | None]] = [(0, None)] * n
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop, self._event = loop, asyncio.Event()

    def publish(self, i: int, jpeg: bytes) -> None:
        self.frames[i] = (self.frames[i][0] + 1, jpeg)
        if self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._pulse)
            except RuntimeError:  # the loop has closed
                pass

    def _pulse(self) -> None:
        old, self._event = self._event, asyncio.Event()
        old.set()

    async def newer(self, i: int, seq: int, timeout: float) -> tuple[int, bytes | None]:
        """The frame of source ``i`` once its number passes ``seq``, or (seq, None) after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if self.frames[i][0] > seq:
                return self.frames[i]
            try:
                await asyncio.wait_for(self._event.wait(), left)
            except asyncio.TimeoutError:
                break
        return (seq, None) if self.frames[i][0] <= seq else self.frames[i]


@dataclasses.dataclass
class ServeSummary:
    frames: int
    seconds: float
    unique_people: dict[str, int]
    events: int
    alerts: int
    outputs: list[str]
    message: str

    def __str__(self) -> str:
        people = ", ".join(f"{k} {v}" for k, v in self.unique_people.items())
        return (f"{self.frames} frames in {self.seconds:.1f} s; people: {people}; {self.events} event(s), {self.alerts} "
                f"alert(s). {self.message}" + (f" Wrote {', '.join(self.outputs)}." if self.outputs else ""))


class Monitor:
    """Sources, detector, trackers and what the page shows. ``start()`` starts the threads, ``close()`` stops them and
    finishes the recordings and the event log (renamed into place); everything in between is read by the web app."""

    def __init__(self, cfg: ServeConfig, detector, alert: Callable | None = None):
        from mask_od.live import _source_fps
        from mask_od.plots import class_color_rgb

        self.cfg, self.detector, self.alert = cfg, detector, alert
        self.names = list(detector.label_map.values())
        self.colors = {n: class_color_rgb(i) for i, n in detector.label_map.items()}
        self.wake, self.stopping = threading.Event(), threading.Event()
        self.readers = [SourceReader(i, s, cfg.loop, cfg.retry_max_s, self.wake) for i, s in enumerate(cfg.sources)]
        self.trackers = [PersonTracker(detector.label_map, dataclasses.replace(cfg.tracker, fps=_source_fps(s) or cfg.tracker.fps))
                         for s in cfg.sources]
        self.hub = FrameHub(len(self.readers))
        self.now_counts = [{n: 0 for n in self.names} for _ in self.readers]
        self.processed = [0] * len(self.readers)
        self._times = [collections.deque(maxlen=32) for _ in self.readers]  # when each source's last frames were done
        self.events: collections.deque = collections.deque(maxlen=cfg.max_events)
        self.crops: dict[int, bytes] = {}
        self.num_events = self.errors = 0
        self.last_error: str | None = None
        self._recent: collections.deque = collections.deque(maxlen=64)  # processing times, for the FPS of the last frames
        self._sinks: dict[int, object] = {}
        self._tmp = {p: temp_sibling(p) for p in output_paths(cfg)}
        self._log = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="detector")
        self.t0 = time.time()

    def start(self) -> None:
        for p, t in self._tmp.items():
            p.parent.mkdir(parents=True, exist_ok=True)
        if self.cfg.event_log:
            self._log = open(self._tmp[Path(self.cfg.event_log)], "w", encoding="utf-8")
        for r in self.readers:
            r.start()
        self._thread.start()

    def _run(self) -> None:
        nxt = 0
        while not self.stopping.is_set():
            got = False
            for k in range(len(self.readers)):
                i = (nxt + k) % len(self.readers)
                item = self.readers[i].take()
                if item is not None:
                    got, nxt = True, i + 1
                    try:
                        self._process(i, *item)
                    except Exception as e:  # noqa: BLE001 - one bad frame must not end the monitor; shown on /api/health
                        self.errors, self.last_error = self.errors + 1, f"{type(e).__name__}: {str(e)[:300]}"
                    break
            if not got:
                self.wake.wait(0.05)
                self.wake.clear()

    def _process(self, i: int, frame_no: int, bgr: np.ndarray) -> None:
        import cv2

        from mask_od.live import draw_overlay
        from mask_od.plots import draw_boxes_rgb

        t = time.perf_counter()
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        tf = self.trackers[i].update(self.detector.predict(rgb), rgb.shape[:2])
        det = tf.detections
        counts = {n: 0 for n in self.names}
        for n in det.names:
            counts[n] = counts.get(n, 0) + 1
        self.now_counts[i] = counts
        for person, k in tf.events:
            self._event(i, person, det.select([k]), rgb)
        out = draw_boxes_rgb(rgb, det.boxes, det.classes, [f"{n} #{t}" for n, t in zip(det.names, tf.track_ids)])
        now = time.perf_counter()
        self._recent.append((now, now - t))
        self._times[i].append(now)
        draw_overlay(out, self.fps(i), counts, self.colors)
        self.processed[i] += 1
        if self.cfg.record_dir:
            self._record(i, cv2.cvtColor(out, cv2.COLOR_RGB2BGR))
        h, w = out.shape[:2]
        if w > self.cfg.stream_width:
            out = cv2.resize(out, (self.cfg.stream_width, max(1, round(h * self.cfg.stream_width / w))), interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(out, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, self.cfg.jpeg_quality])
        if ok:
            self.hub.publish(i, buf.tobytes())

    def _event(self, i: int, person, det, rgb: np.ndarray) -> None:
        import cv2

        h, w = rgb.shape[:2]
        y0, x0, y1, x1 = det.boxes[0]
        my, mx = 0.15 * (y1 - y0), 0.15 * (x1 - x0)
        crop = rgb[int(max(0, y0 - my) * h):int(min(1, y1 + my) * h) + 1, int(max(0, x0 - mx) * w):int(min(1, x1 + mx) * w) + 1]
        if max(crop.shape[:2]) > 160:
            f = 160 / max(crop.shape[:2])
            crop = cv2.resize(crop, (max(1, round(crop.shape[1] * f)), max(1, round(crop.shape[0] * f))), interpolation=cv2.INTER_AREA)
        self.num_events += 1
        eid = self.num_events
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
        if len(self.events) == self.events.maxlen:
            self.crops.pop(self.events[0]["id"], None)
        if ok:
            self.crops[eid] = buf.tobytes()
        ev = {"id": eid, "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime()), "source": i,
              "source_name": self.readers[i].name, "track_id": person.track_id, "class": person.name,
              "score": round(float(det.scores[0]), 3), "frame": self.trackers[i].frame,
              "box_yxyx": [round(float(v), 4) for v in det.boxes[0]], "crop": f"/api/crops/{eid}.jpg" if ok else None}
        self.events.append(ev)
        if self._log is not None:
            self._log.write(json.dumps(ev) + "\n")
            self._log.flush()
        if self.alert is not None:  # once per person, under the class of the person
            self.alert(Detections(det.boxes, det.classes, det.scores, [person.name]))

    def _record(self, i: int, bgr: np.ndarray) -> None:
        from mask_od.live import VideoSink

        if i not in self._sinks:
            path = Path(self.cfg.record_dir) / f"source{i}.mp4"
            self._sinks[i] = VideoSink(self._tmp[path], self.trackers[i].config.fps, (bgr.shape[1], bgr.shape[0]))
        self._sinks[i].write(bgr)

    def fps(self, source: int | None = None) -> float:
        """Frames processed per second over the last frames (up to 64 of all sources, or 32 of one); 0 when none came
        for 2 s."""
        t = [x for x, _ in list(self._recent)] if source is None else list(self._times[source])
        if len(t) < 2 or t[-1] <= t[0] or time.perf_counter() - t[-1] > 2.0:
            return 0.0
        return (len(t) - 1) / (t[-1] - t[0])

    def unique_counts(self) -> dict[str, int]:
        out = {n: 0 for n in self.names}
        for t in self.trackers:
            for n, c in t.unique_counts().items():
                out[n] = out.get(n, 0) + c
        return out

    def stats(self) -> dict:
        unique = self.unique_counts()
        people = sum(unique.values())
        bare = sum(c for n, c in unique.items() if n in self.cfg.tracker.event_classes)
        now = {n: sum(c.get(n, 0) for c in self.now_counts) for n in self.names}
        recent = [t for _, t in list(self._recent)]
        return {"counts_now": now, "unique_people": unique, "people": people,
                "compliance": round(1 - bare / people, 4) if people else None, "event_classes": list(self.cfg.tracker.event_classes),
                "fps": round(self.fps(), 2), "ms_per_frame": round(1000 * float(np.mean(recent)), 1) if recent else None,
                "frames": sum(self.processed), "events": self.num_events, "uptime_s": round(time.time() - self.t0, 1),
                "sources": [{"index": r.index, "name": r.name, "state": r.state, "frames_read": r.read,
                             "frames_processed": self.processed[r.index], "dropped": r.dropped, "fps": round(self.fps(r.index), 2),
                             "restarts": r.restarts, "error": r.error,
                             "retry_in_s": round(max(0.0, r.retry_at - time.time()), 1) if r.state == "down" and r.retry_at else None,
                             "people_now": sum(self.now_counts[r.index].values())} for r in self.readers]}

    def close(self) -> list[str]:
        """Stop sources and detector, finish recordings and the event log; returns the files written."""
        self.stopping.set()
        for r in self.readers:
            r.stop()
        self._thread.join(timeout=10.0)
        written = []
        try:
            for i, sink in self._sinks.items():
                sink.release()
            if self._log is not None:
                self._log.close()
            for p, t in self._tmp.items():
                if t.exists():
                    replace_path(t, p)
                    written.append(str(p))
        finally:
            for t in self._tmp.values():
                t.unlink(missing_ok=True)
        return written


class TokenGate:
    """ASGI middleware in front of every route: the request path and query must look harmless (no dots, slashes in
    values or unknown keys), and, with a token, carry it (``Authorization: Bearer``, the cookie the page sets, or
    ``?token=`` on the page itself); else 400 / 401 with no body beyond the reason."""

    def __init__(self, app, token: str | None):
        self.app, self.token = app, token

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            return await self.app(scope, receive, send)
        if scope["type"] != "http":  # no websocket routes: refused before they reach the app
            return await send({"type": "websocket.close", "code": 1008})
        from urllib.parse import parse_qsl

        path = scope.get("path", "")
        raw = scope.get("raw_path", path.encode()).decode("latin-1")
        query = scope.get("query_string", b"").decode("latin-1")
        try:
            pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query), max_num_fields=4)
        except ValueError:
            pairs = None
        if (not SAFE_PATH.fullmatch(path) or raw != path or pairs is None
                or any(k not in QUERY_KEYS or not re.fullmatch(QUERY_KEYS[k], v) for k, v in pairs)):
            return await _reply(send, 400, b"refused: the path or query holds characters this server never uses")
        if self.token is not None:
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            given = []
            auth = headers.get("authorization", "")
            if auth.startswith("Bearer "):
                given.append(auth[7:].strip())
            for part in headers.get("cookie", "").split(";"):
                k, _, v = part.strip().partition("=")
                if k == COOKIE:
                    given.append(v)
            if path == "/":
                given += [v for k, v in pairs if k == "token"]
            if not any(hmac.compare_digest(g.encode(), self.token.encode()) for g in given):
                return await _reply(send, 401, b"unauthorized: this monitor wants its token", [(b"www-authenticate", b"Bearer")])
        return await self.app(scope, receive, send)


async def _reply(send, status: int, body: bytes, headers: list | None = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())] + (headers or [])})
    await send({"type": "http.response.body", "body": body})


def build_app(monitor: Monitor, token: str | None = None):
    """The FastAPI app over a started :class:`Monitor` (no docs routes; every route behind :class:`TokenGate`)."""
    import contextlib

    from fastapi import FastAPI, HTTPException, Query
    from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

    @contextlib.asynccontextmanager
    async def lifespan(app):
        monitor.hub.bind(asyncio.get_running_loop())
        yield

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    n = len(monitor.readers)
    nocache = {"Cache-Control": "no-store"}

    def source_index(index: int) -> int:
        if not 0 <= index < n:
            raise HTTPException(404, f"no source {index} (there are {n})")
        return index

    @app.get("/", response_class=HTMLResponse)
    async def page():
        r = HTMLResponse(PAGE.read_text(encoding="utf-8"), headers={**nocache, "Content-Security-Policy":
                         "default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src 'self'"})
        if token is not None:
            r.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return r

    @app.get("/api/health")
    async def health():
        states = [r.state for r in monitor.readers]
        return JSONResponse({"ok": monitor._thread.is_alive() and not monitor.stopping.is_set(), "sources": states,
                             "frame_errors": monitor.errors, "last_error": monitor.last_error}, headers=nocache)

    @app.get("/api/stats")
    async def stats():
        return JSONResponse(monitor.stats(), headers=nocache)

    @app.get("/api/events")
    async def events(after: int = Query(0, ge=-1, le=10**12), limit: int = Query(50, ge=1, le=1000)):
        evs = [e for e in list(monitor.events) if e["id"] > after][-limit:]
        return JSONResponse({"events": evs, "total": monitor.num_events}, headers=nocache)

    @app.get("/api/crops/{event_id}.jpg")
    async def crop(event_id: int):
        data = monitor.crops.get(event_id)
        if data is None:
            raise HTTPException(404, "no such event crop (events rotate out after max_events)")
        return Response(data, media_type="image/jpeg")

    @app.get("/api/frame/{index}.jpg")
    async def frame(index: int):
        seq, jpeg = monitor.hub.frames[source_index(index)]
        if jpeg is None:
            raise HTTPException(404, "no frame yet")
        return Response(jpeg, media_type="image/jpeg", headers={**nocache, "X-Frame-Seq": str(seq)})

    @app.get("/stream/{index}.mjpg")
    async def stream(index: int):
        i = source_index(index)

        async def parts():
            seq = 0
            while not monitor.stopping.is_set():
                seq, jpeg = await monitor.hub.newer(i, seq, 1.0)
                if jpeg is not None:
                    yield b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%b\r\n" % (len(jpeg), jpeg)

        return StreamingResponse(parts(), media_type="multipart/x-mixed-replace; boundary=frame", headers=nocache)

    @app.get("/api/updates")
    async def updates():
        async def messages():
            last = -1
            while not monitor.stopping.is_set():
                evs = [e for e in list(monitor.events) if e["id"] > last][-50:]
                last = evs[-1]["id"] if evs else last
                yield f"data: {json.dumps({'stats': monitor.stats(), 'events': evs})}\n\n"
                for _ in range(5):
                    if monitor.stopping.is_set():
                        break
                    await asyncio.sleep(0.1)

        return StreamingResponse(messages(), media_type="text/event-stream", headers=nocache)

    return TokenGate(app, token)


def _server(cfg: ServeConfig, monitor: Monitor, on_ready: Callable[[str], None]):
    """A uvicorn server of the monitor's app; ``on_ready(url)`` once its port is open. A stop signal (or
    ``should_exit``) also ends the endless streams, so that it can close."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):
            monitor.stopping.set()
            super().handle_exit(sig, frame)

        async def startup(self, sockets=None):
            await super().startup(sockets)
            if self.started:
                port = self.servers[0].sockets[0].getsockname()[1] if self.servers else cfg.port
                on_ready(f"http://{f'[{cfg.host}]' if ':' in cfg.host else cfg.host}:{port}/")

    return Server(uvicorn.Config(build_app(monitor, cfg.token), host=cfg.host, port=cfg.port, log_level="warning",
                                 access_log=False, timeout_graceful_shutdown=3, lifespan="on"))


def _summary(monitor: Monitor, alert, written: list[str], message: str) -> ServeSummary:
    return ServeSummary(sum(monitor.processed), time.time() - monitor.t0, monitor.unique_counts(), monitor.num_events,
                        getattr(alert, "count", 0), written, message)


def _bind_error(cfg: ServeConfig) -> ServeError:
    return ServeError(f"could not serve on {cfg.host}:{cfg.port} (in use, or not an address of this machine)")


def serve(cfg: ServeConfig, detector, alert: Callable | None = None, on_ready: Callable[[str], None] | None = None) -> ServeSummary:
    """Run the monitor and its web page until Ctrl-C (or SIGTERM); returns a summary once recordings and the event log
    are finished. Raises :class:`ServeError` before anything starts when the setting is unsafe (see
    :func:`validate_config`), or when the port cannot be had. ``on_ready(line)`` gets the URL and whether a token is
    required once the port is open (default: print it)."""
    import signal

    validate_config(cfg)
    monitor = Monitor(cfg, detector, alert)
    note = (" (token required: open it as ?token=TOKEN, or send Authorization: Bearer TOKEN)" if cfg.token
            else " (this machine only)")
    server = _server(cfg, monitor, lambda url: (on_ready or print)(url + note))
    main = threading.current_thread() is threading.main_thread()
    old_term = signal.signal(signal.SIGTERM, signal.default_int_handler) if main else None  # SIGTERM ends as cleanly as Ctrl-C
    monitor.start()
    message = "stopped"
    try:
        server.run()
    except SystemExit:  # uvicorn exits when it cannot bind
        raise _bind_error(cfg) from None
    except KeyboardInterrupt:
        message = "stopped by interrupt"
    finally:
        monitor.stopping.set()
        written = monitor.close()
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    return _summary(monitor, alert, written, message)


class BackgroundMonitor:
    """The monitor served from a thread of this process, e.g. in a notebook: ``IFrame(m.url, 1200, 700)`` shows the
    page, ``m.stop()`` ends it and returns the summary (recordings and event log finished). Raises
    :class:`ServeError` like :func:`serve`. ``cfg.port = 0`` takes a free port."""

    def __init__(self, cfg: ServeConfig, detector, alert: Callable | None = None, timeout_s: float = 30.0):
        validate_config(cfg)
        self.cfg, self.alert, self.url = cfg, alert, None
        self.monitor = Monitor(cfg, detector, alert)
        ready = threading.Event()
        self._server = _server(cfg, self.monitor, lambda url: (setattr(self, "url", url), ready.set()))
        self.monitor.start()
        self._thread = threading.Thread(target=self._run, daemon=True, name="monitor-server")
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not ready.wait(0.05) and self._thread.is_alive() and time.monotonic() < deadline:
            pass
        if self.url is None:
            self.stop()
            raise _bind_error(cfg)

    def _run(self) -> None:
        try:
            self._server.run()
        except SystemExit:  # cannot bind: the constructor says so
            pass

    def stop(self) -> ServeSummary:
        self.monitor.stopping.set()
        self._server.should_exit = True
        self._thread.join(timeout=10.0)
        return _summary(self.monitor, self.alert, self.monitor.close(), "stopped")
