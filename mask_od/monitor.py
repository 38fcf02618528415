"""The monitor behind the browser page: frame sources read in threads (retried with back-off when they die), one
detector thread taking their frames in turn, a tracker per source, events with face crops, and the newest annotated
JPEG of each source for any number of viewers (latest frame wins); recordings and the event log finished at the end."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import re
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from mask_od.detections import Detections
from mask_od.fileio import replace_path, temp_sibling
from mask_od.sources import Source, SourceError, describe_source, is_live, iter_frames
from mask_od.track import PersonTracker, TrackerConfig


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

    def __post_init__(self):
        if self.host.startswith("[") and self.host.endswith("]"):  # an IPv6 address as a URL writes it: [::1]
            self.host = self.host[1:-1]


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
        self.state, self.error, self.retry_at, self._said = "starting", None, None, None
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
            got = 0
            if self.state == "starting":  # a looped file's next pass stays "up"; a source retried stays "down" (and
                self.state = "connecting"  # unhealthy) while it reconnects, which for a stream takes up to its timeout
            try:
                for frame in iter_frames(self.source):
                    if self._said is not None:  # it was said to be down: say it is back
                        print(f"source {self.index} ({self.name}) up again", file=sys.stderr, flush=True)
                        self._said = None
                    self.error, self.retry_at, backoff = None, None, 1.0  # cleared before "up" is shown
                    self.state = "up"
                    self._put(frame)
                    got += 1
                    if self._stop.is_set():
                        return
                if not got and self.replayable:  # else a looped empty file would spin
                    raise SourceError(f"{self.name}: no frame could be read (empty, or a codec OpenCV's FFmpeg lacks)")
                if not self.live and not (self.loop and self.replayable):
                    self.state = "ended"
                    print(f"source {self.index} ({self.name}) ended after {got} frame{'s' * (got != 1)}", flush=True)
                    return
                if not self.live:
                    self.restarts += 1
                    continue
                raise SourceError(f"{self.name}: no more frames (camera unplugged or stream closed)")
            except Exception as e:  # noqa: BLE001 - a dying source is retried, never ends the process
                self.error = str(e)[:300]
                if self.error != self._said:  # the terminal (or notebook) hears of each new failure once
                    self._said = self.error
                    print(f"source {self.index} ({self.name}) down: {self.error}"
                          + ("; retrying" if self.replayable else ""), file=sys.stderr, flush=True)
            if not self.replayable:
                self.state = "ended"
                return
            self.retry_at = time.time() + backoff  # before the state: "down" is never shown without its retry time
            self.state = "down"
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
        # each tracker's people per class, replaced (never changed) by the detector thread after each frame: the web
        # app reads these, never the trackers' dicts, which that thread changes while it tracks
        self._unique = [t.unique_counts() for t in self.trackers]
        self.processed = [0] * len(self.readers)
        self.handled = [0] * len(self.readers)  # frames taken from each reader and done with (shown, or failed)
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
                    self.handled[i] += 1
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
        self._unique[i] = self.trackers[i].unique_counts()
        for person, k in tf.events:
            self._event(i, person, det.select([k]), rgb)
        out = draw_boxes_rgb(rgb, det.boxes, det.classes, [f"{n} #{t}" for n, t in zip(det.names, tf.track_ids)])
        now = time.perf_counter()
        self._recent.append((now, now - t))
        self._times[i].append(now)
        draw_overlay(out, self.fps(i), counts, self.colors)
        if self.cfg.record_dir:
            self._record(i, cv2.cvtColor(out, cv2.COLOR_RGB2BGR))
        h, w = out.shape[:2]
        if w > self.cfg.stream_width:
            out = cv2.resize(out, (self.cfg.stream_width, max(1, round(h * self.cfg.stream_width / w))), interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(out, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, self.cfg.jpeg_quality])
        if ok:
            self.hub.publish(i, buf.tobytes())
        self.processed[i] += 1  # once shown: a count read by the web app never runs ahead of the page

    def finished(self, i: int) -> bool:
        """Source ``i`` has ended and every frame it read is done: no newer frame of it will come."""
        r = self.readers[i]
        return r.state == "ended" and self.handled[i] + r.dropped >= r.read  # a dropped (stale live) frame is never taken

    def running(self) -> bool:
        """The detector thread is processing frames (started, not stopped, not dead)."""
        return self._thread.is_alive() and not self.stopping.is_set()

    def state(self, i: int) -> str:
        """Source ``i``'s state as shown (page, ``/api/stats``, ``/api/health``): its reader's, except that a source whose
        reader has ended stays ``up`` until its last frames are processed (counts and frames are final once ``ended``)."""
        st = self.readers[i].state
        if not self.running():  # no frame will be processed any more
            return st
        return "up" if st == "ended" and not self.finished(i) else st

    def _event(self, i: int, person, det, rgb: np.ndarray) -> None:
        import cv2

        h, w = rgb.shape[:2]
        y0, x0, y1, x1 = det.boxes[0]
        my, mx = 0.15 * (y1 - y0), 0.15 * (x1 - x0)
        crop = rgb[int(max(0, y0 - my) * h):int(min(1, y1 + my) * h) + 1, int(max(0, x0 - mx) * w):int(min(1, x1 + mx) * w) + 1]
        if max(crop.shape[:2]) > 160:
            f = 160 / max(crop.shape[:2])
            crop = cv2.resize(crop, (max(1, round(crop.shape[1] * f)), max(1, round(crop.shape[0] * f))), interpolation=cv2.INTER_AREA)
        eid = self.num_events + 1
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
        if ok:
            self.crops[eid] = buf.tobytes()
        ev = {"id": eid, "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime()), "source": i,
              "source_name": self.readers[i].name, "track_id": person.track_id, "class": person.name,
              "score": round(float(det.scores[0]), 3), "frame": self.trackers[i].frame,
              "box_yxyx": [round(float(v), 4) for v in det.boxes[0]], "crop": f"/api/crops/{eid}.jpg" if ok else None}
        dropped = self.events[0]["id"] if len(self.events) == self.events.maxlen else None
        self.num_events = eid  # counted, then listed (the web app reads the list, then the count: no id above it), and
        self.events.append(ev)  # the crop of the event that rotated out freed only once it is no longer listed
        if dropped is not None:
            self.crops.pop(dropped, None)
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
        for counts in list(self._unique):
            for n, c in counts.items():
                out[n] = out.get(n, 0) + c
        return out

    def stats(self) -> dict:
        unique = self.unique_counts()
        people = sum(unique.values())
        bare = sum(c for n, c in unique.items() if n in self.cfg.tracker.event_classes)
        states = [self.state(r.index) for r in self.readers]
        live = [st != "ended" for st in states]  # a source that has ended shows no one now
        now = {n: sum(c.get(n, 0) for c, on in zip(self.now_counts, live) if on) for n in self.names}
        recent = [t for _, t in list(self._recent)]
        return {"counts_now": now, "unique_people": unique, "people": people,
                "compliance": round(1 - bare / people, 4) if people else None, "event_classes": list(self.cfg.tracker.event_classes),
                "fps": round(self.fps(), 2), "ms_per_frame": round(1000 * float(np.mean(recent)), 1) if recent else None,
                "frames": sum(self.processed), "events": self.num_events, "uptime_s": round(time.time() - self.t0, 1),
                "sources": [{"index": r.index, "name": r.name, "state": st, "frames_read": r.read,
                             "frames_processed": self.processed[r.index], "dropped": r.dropped, "fps": round(self.fps(r.index), 2),
                             "restarts": r.restarts, "error": r.error,
                             "retry_in_s": round(max(0.0, ra - time.time()), 1) if st == "down" and (ra := r.retry_at) else None,
                             "people_now": sum(self.now_counts[r.index].values()) if st != "ended" else 0}
                            for r, st in zip(self.readers, states)]}

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
