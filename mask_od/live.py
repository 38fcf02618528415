"""Live detection: a capture thread feeding the newest frame to the detector, overlay with FPS and counts, alerts off
the frame loop, annotated video and per-frame JSONL log, shown in a window, inline in Jupyter, or not at all."""

from __future__ import annotations

import dataclasses
import json
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np

from mask_od.detect import draw_detections
from mask_od.detections import Detections
from mask_od.errors import MaskODError
from mask_od.fileio import refuse_existing, refuse_outputs_on_inputs, replace_path, temp_sibling
from mask_od.sources import Source, is_live, iter_frames

RATE_FRAMES = 10  # a camera or stream recording is written at the processing rate measured over its first frames


@dataclasses.dataclass
class FrameResult:
    """One processed frame: ``image`` is the annotated RGB frame."""

    index: int
    image: np.ndarray
    detections: Detections
    fps: float
    dropped: int


@dataclasses.dataclass
class LiveSummary:
    frames: int
    dropped: int
    seconds: float
    fps: float
    detections_per_class: dict[str, int]
    frames_with_class: dict[str, int]
    alerts: int
    message: str
    video_path: str | None = None
    log_path: str | None = None
    display: str = "none"  # where the frames were shown: window, notebook or none

    def __str__(self) -> str:
        counts = ", ".join(f"{k}: {v}" for k, v in self.detections_per_class.items()) or "none"
        return (f"{self.frames} frame{'s' * (self.frames != 1)} in {self.seconds:.1f} s ({self.fps:.1f} FPS), "
                f"{self.dropped} stale frame{'s' * (self.dropped != 1)} dropped; "
                f"detections {counts}; {self.alerts} alert{'s' * (self.alerts != 1)}. {self.message.rstrip('.')}.")


class AlertClassError(MaskODError, ValueError):
    """An alert class the model never outputs (a typo, another model's class): its alert could never fire."""


def check_alert_classes(classes: Sequence[str], label_map: Mapping[int, str], allowed: Sequence[str] | None = None,
                        why: str = "") -> None:
    """Raise :class:`AlertClassError` when a name of ``classes`` is not a class of ``label_map`` ({id: name}), or not
    one of ``allowed`` (``why`` says why only those)."""
    names = list(label_map.values())
    unknown = [c for c in classes if c not in names]
    if unknown:
        raise AlertClassError(f"alert class{'es' * (len(unknown) != 1)} {', '.join(map(repr, unknown))} not among the "
                              f"model's classes ({', '.join(names)}): such an alert could never fire")
    if allowed is not None and (other := [c for c in classes if c not in allowed]):
        raise AlertClassError(f"alert class{'es' * (len(other) != 1)} {', '.join(map(repr, other))} would never fire: "
                              f"{why or 'only ' + ', '.join(allowed) + ' raise alerts'}")


def default_alert_classes(given: Sequence[str] | None, label_map: Mapping[int, str], default: Sequence[str],
                          allowed: Sequence[str] | None = None, why: str = "") -> list[str]:
    """The alert classes of a script: ``given`` (``--alert_classes``) checked by :func:`check_alert_classes` against
    ``label_map`` and ``allowed``; None (not given): those of ``default`` the model has, said in one line when it has
    none of them (a model of other classes: no alerts)."""
    if given is not None:
        check_alert_classes(given, label_map, allowed, why)
        return list(given)
    chosen = [c for c in default if c in label_map.values()]
    if not chosen:
        print(f"alerts off: the model has no class {' or '.join(default)} (its classes: {', '.join(label_map.values())})",
              flush=True)
    return chosen


class FrameGrabber:
    """Reads a source in its own thread. With ``drop`` (cameras, streams) only the newest frame is kept and stale ones
    are counted in ``dropped``; without it (files) frames queue up two deep so decoding overlaps detection."""

    def __init__(self, source: Source, drop: bool, max_frames: int | None = None):
        self.drop, self.dropped, self.error = drop, 0, None
        self._q: queue.Queue = queue.Queue(maxsize=1 if drop else 2)
        self._stop = threading.Event()
        self._frames = iter_frames(source, max_frames)  # opens now: a bad source raises here, in the caller
        self._first = next(self._frames, None)
        self._thread = threading.Thread(target=self._run, daemon=True, name="frame-grabber")
        self._thread.start()

    def _put(self, item) -> None:
        while not self._stop.is_set():
            if self.drop:
                try:
                    self._q.put_nowait(item)
                    return
                except queue.Full:
                    try:
                        self._q.get_nowait()
                        self.dropped += 1
                    except queue.Empty:
                        pass
            else:
                try:
                    self._q.put(item, timeout=0.1)
                    return
                except queue.Full:
                    continue

    def _run(self) -> None:
        try:
            if self._first is not None:
                self._put(self._first)
                for frame in self._frames:
                    if self._stop.is_set():
                        break
                    self._put(frame)
        except Exception as e:  # noqa: BLE001 - a dying camera must end the loop, not the process
            self.error = e
        finally:
            self._frames.close()
            while not self._stop.is_set():  # the end marker waits behind the last frame, unless the reader is gone
                try:
                    self._q.put(None, timeout=0.1)
                    break
                except queue.Full:
                    continue

    def get(self, timeout: float = 10.0) -> np.ndarray | None:
        """The next (newest) BGR frame, or None when the source has ended or stopped answering for ``timeout`` s."""
        try:
            return self._q.get(timeout=timeout)
        except queue.Empty:
            self.error = self.error or TimeoutError(f"no frame for {timeout:.0f} s: camera unplugged or stream stalled")
            return None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)


class VideoSink:
    """An mp4 writer that encodes in its own thread (encoding a 1366x768 frame takes ~7 ms: it overlaps detection
    instead of adding to it). Frames queue up to ``depth`` deep; ``write`` waits when the encoder falls behind, so no
    frame is lost. ``release`` finishes the queue; an encoder error is raised there or at the next ``write``."""

    def __init__(self, path: Path, fps: float, size_wh: tuple[int, int], depth: int = 4):
        import cv2

        self._writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size_wh)
        if not self._writer.isOpened():
            raise OSError(f"{path}: cannot open a video writer (mp4v)")
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="video-writer")
        self._thread.start()

    def _run(self) -> None:
        while (frame := self._q.get()) is not None:
            if self.error is None:
                try:
                    self._writer.write(frame)
                except Exception as e:  # noqa: BLE001 - reported to the frame loop
                    self.error = e

    def write(self, bgr: np.ndarray) -> None:
        if self.error is not None:
            raise self.error
        self._q.put(bgr)

    def release(self) -> None:
        if self._thread.is_alive():
            self._q.put(None)
            self._thread.join()
        self._writer.release()
        if self.error is not None:
            raise self.error


class AlertHook:
    """Calls ``callback(message)`` in a worker thread when any of ``classes`` is seen, at most once per ``cooldown_s``;
    never blocks the frame loop: alerts wait in a queue of ``max_pending`` while the callback is still busy with an
    earlier one (the monitor fires one per person, two people in one frame make two), and beyond it are counted in
    ``dropped`` instead of sent."""

    def __init__(self, callback: Callable[[str], None] | None = None, classes: Sequence[str] = ("without_mask",),
                 cooldown_s: float = 5.0, max_pending: int = 8):
        import queue

        self.callback = callback or default_alert
        self.classes, self.cooldown_s = set(classes), cooldown_s
        self.count, self.dropped, self._last = 0, 0, -float("inf")
        self._pending = 0  # alerts queued whose callback has not returned yet
        self._queue: queue.Queue = queue.Queue(maxsize=max_pending)
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()

    def __call__(self, det: Detections, now: float | None = None) -> bool:
        import queue

        now = time.monotonic() if now is None else now
        seen = [n for n in det.names if n in self.classes]
        if not seen or now - self._last < self.cooldown_s:
            return False
        msg = f"ALERT: {len(seen)} face{'s' * (len(seen) != 1)} {', '.join(sorted(set(seen)))} at {time.strftime('%H:%M:%S')}"
        with self._lock:
            self._pending += 1  # before the worker can take it: wait() never sees it neither queued nor pending
        try:
            self._queue.put_nowait(msg)
        except queue.Full:
            with self._lock:
                self._pending -= 1
            self.dropped += 1
            return False
        self._last = now
        self.count += 1
        with self._lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._run, daemon=True, name="alert")
                self._worker.start()
        return True

    def _run(self) -> None:
        """Hand queued alerts to the callback; end once the queue stayed empty for a second (a new alert starts a
        new worker), so no thread outlives its alerts."""
        import queue

        while True:
            try:
                msg = self._queue.get(timeout=1.0)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():
                        self._worker = None
                        return
                continue
            try:
                self.callback(msg)
            except Exception as e:  # noqa: BLE001 - a failing callback must not end the alerts that follow
                print(f"alert callback failed: {e}", file=sys.stderr, flush=True)
            finally:
                with self._lock:
                    self._pending -= 1

    def wait(self, timeout_s: float = 5.0) -> bool:
        """Wait until the callback has returned for every queued alert (tests, a clean exit: an alert printed after the
        summary line would read as a later one); True if it has."""
        deadline = time.monotonic() + timeout_s
        while not self._done() and time.monotonic() < deadline:
            time.sleep(0.01)
        return self._done()

    def _done(self) -> bool:
        with self._lock:
            return self._pending == 0


def default_alert(message: str) -> None:
    """Prints the message with a terminal bell."""
    print("\a" + message, file=sys.stderr, flush=True)


def draw_overlay(rgb: np.ndarray, fps: float, counts: dict[str, int], colors: dict[str, tuple[int, int, int]]) -> np.ndarray:
    """FPS and per-class counts in a panel at the top left, scaled to the frame size (in place, returns the image)."""
    import cv2

    h, w = rgb.shape[:2]
    scale = max(0.5, min(h, w) / 720)
    lines = [(f"FPS {fps:.1f}", (255, 255, 255))] + [(f"{n}: {c}", colors.get(n, (255, 255, 255))) for n, c in counts.items()]
    lh = int(30 * scale)
    cv2.rectangle(rgb, (0, 0), (int(260 * scale), lh * len(lines) + int(10 * scale)), (0, 0, 0), -1)
    for i, (text, col) in enumerate(lines):
        cv2.putText(rgb, text, (int(8 * scale), lh * (i + 1)), cv2.FONT_HERSHEY_SIMPLEX, 0.8 * scale, col, max(1, int(2 * scale)), cv2.LINE_AA)
    return rgb


def stream_detections(detector, source: Source, drop_frames: bool | None = None, max_frames: int | None = None,
                      overlay: bool = True) -> Iterator[FrameResult]:
    """Yield a :class:`FrameResult` per processed frame (Ultralytics-style streaming: nothing piles up in memory).
    ``drop_frames`` defaults to True for cameras and streams, False for files, folders and iterators."""
    import cv2

    from mask_od.plots import class_color_rgb

    grabber = FrameGrabber(source, is_live(source) if drop_frames is None else drop_frames, max_frames)
    colors = {n: class_color_rgb(i) for i, n in detector.label_map.items()}
    t_prev, fps, index = time.perf_counter(), 0.0, 0
    try:
        while (frame := grabber.get()) is not None:
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            det = detector.predict(rgb)
            out = draw_detections(rgb, det)
            now = time.perf_counter()
            inst = 1.0 / max(now - t_prev, 1e-6)
            fps = inst if index == 0 else 0.9 * fps + 0.1 * inst
            t_prev = now
            if overlay:
                draw_overlay(out, fps, {n: det.counts().get(n, 0) for n in detector.label_map.values()}, colors)
            yield FrameResult(index, out, det, fps, grabber.dropped)
            index += 1
        if grabber.error is not None:
            raise grabber.error
    finally:
        grabber.close()


def run_live(detector, source: Source = 0, display: str = "auto", output_video: Path | str | None = None,
             log_path: Path | str | None = None, alert: AlertHook | None = None, max_frames: int | None = None,
             drop_frames: bool | None = None, output_fps: float | None = None, overwrite: bool = False,
             print_every_s: float = 5.0) -> LiveSummary:
    """Run detection on a source until it ends, ``q``/Esc in the window, or Ctrl-C / interrupt; returns a summary.

    ``display``: ``window`` (OpenCV's window, or a Tk window with the headless OpenCV; needs a desktop), ``notebook``
    (inline, updated in place), ``none``, or ``auto`` (inline inside Jupyter, else a window if a desktop exists, else
    none); see :func:`mask_od.display.open_view`. An output that is the source or the model file (or a folder holding
    one) is refused before anything starts, whatever ``overwrite`` says. A camera that is missing raises
    ``SourceError`` at once; one that dies midway ends the run, and the video and log keep what was recorded. Both are
    written under temporary names and renamed at the end. ``output_fps``: the video's frame rate; by default a video
    file's own, for a camera or stream the processing rate measured over its first ``RATE_FRAMES`` frames (a
    recording plays at the speed it was seen), else 30."""
    import cv2

    from mask_od.display import open_view
    from mask_od.sources import SourceError

    if max_frames is not None and max_frames < 1:
        raise SourceError(f"max_frames must be a positive number of frames, got {max_frames} "
                          "(leave it out, or None in Python, to run until the source ends)")
    path_source = isinstance(source, (str, Path)) and not is_live(source)
    refuse_outputs_on_inputs({"output video": output_video, "log": log_path},
                             [("source", source if path_source else None), ("model", getattr(detector, "path", None))],
                             inside=True)
    outputs = [Path(p) for p in (output_video, log_path) if p is not None]
    for p in outputs:
        refuse_existing(p, overwrite, file=True)
        p.parent.mkdir(parents=True, exist_ok=True)
    tmp = {p: temp_sibling(p) for p in outputs}
    per_class = {n: 0 for n in detector.label_map.values()}
    frames_with = dict(per_class)
    n = dropped = capped = 0
    cap = getattr(detector, "max_detections", None)
    message, t0, t_print = "source ended", time.perf_counter(), time.perf_counter()
    writer = view = None
    pending: list[tuple[float, np.ndarray]] = []  # live source: (time, frame) held until the processing rate is known
    log = open(tmp[Path(log_path)], "w") if log_path else None
    import signal

    main = threading.current_thread() is threading.main_thread()  # SIGTERM ends as cleanly as Ctrl-C (it left temp files)
    old_term = signal.signal(signal.SIGTERM, signal.default_int_handler) if main else None
    try:
        view = open_view(display)
        try:
            for r in stream_detections(detector, source, drop_frames, max_frames):
                n, dropped = r.index + 1, r.dropped
                if output_video is not None:
                    bgr = cv2.cvtColor(r.image, cv2.COLOR_RGB2BGR)
                    if writer is None:
                        fps_out = output_fps or _source_fps(source) or (None if is_live(source) else 30.0)
                        pending.append((time.perf_counter(), bgr))
                        if fps_out is not None or len(pending) >= RATE_FRAMES:
                            writer = _open_sink(tmp[Path(output_video)], fps_out, pending)
                    else:
                        writer.write(bgr)
                counts = r.detections.counts()
                capped += bool(cap) and len(r.detections) >= cap
                for k, v in counts.items():
                    per_class[k] = per_class.get(k, 0) + v
                    frames_with[k] = frames_with.get(k, 0) + 1
                if log is not None:
                    log.write(json.dumps({"frame": r.index, "time": round(time.perf_counter() - t0, 4), "detections": [
                        {"class": nm, "id": int(c), "score": round(float(sc), 4), "box_yxyx": [round(float(v), 4) for v in b]}
                        for nm, c, sc, b in zip(r.detections.names, r.detections.classes, r.detections.scores, r.detections.boxes)]}) + "\n")
                if alert is not None:
                    alert(r.detections)
                if not view.show(r.image):
                    message = "stopped by key"
                    break
                if print_every_s and time.perf_counter() - t_print > print_every_s:
                    t_print = time.perf_counter()
                    print(f"frame {n}: {r.fps:.1f} FPS, {', '.join(f'{k} {v}' for k, v in counts.items()) or 'no faces'}", flush=True)
        except KeyboardInterrupt:
            message = "stopped by interrupt"
        except (SourceError, TimeoutError) as e:
            if n == 0:
                raise
            message = f"source stopped: {e}"
        if max_frames is not None and n >= max_frames and message == "source ended":
            message = f"max_frames ({max_frames}) reached"
        if n == 0 and message == "source ended":
            from mask_od.sources import describe_source

            raise SourceError(f"{describe_source(source) if not isinstance(source, (str, Path)) else source}: no frame "
                              "could be read (an empty video, or a codec OpenCV's FFmpeg lacks); nothing was written")
        if writer is None and pending:  # a live session shorter than RATE_FRAMES frames
            writer = _open_sink(tmp[Path(output_video)], None, pending)
        if writer is not None:
            writer.release()
            writer = None
        if log is not None:
            log.close()
        for p, t in tmp.items():
            if t.exists():
                replace_path(t, p)
    finally:
        if writer is not None:
            try:
                writer.release()
            except Exception:  # noqa: BLE001 - the error already on its way matters more
                pass
        if log is not None:
            log.close()
        for t in tmp.values():
            t.unlink(missing_ok=True)
        if view is not None:
            view.close()
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    secs = time.perf_counter() - t0
    if alert is not None:
        alert.wait()  # the last ALERT line is said before the summary, not after or inside it
    if capped:
        message += (f"; {capped} frame{'s' * (capped != 1)} reached max_detections ({cap}): faces beyond the best {cap} were not drawn "
                    "or counted")
    return LiveSummary(n, dropped, secs, n / secs if secs > 0 else 0.0, per_class, frames_with, alert.count if alert else 0,
                       message, str(output_video) if output_video is not None and n else None,
                       str(log_path) if log_path is not None else None, view.kind if view is not None else "none")


def _open_sink(path: Path, fps: float | None, pending: list[tuple[float, np.ndarray]]) -> VideoSink:
    """A :class:`VideoSink` at ``fps``, or (None) at the rate the ``pending`` (time, BGR frame) pairs were processed,
    so a live recording plays at the speed it was seen (30 fps for a single frame); writes and empties ``pending``."""
    if fps is None:
        span = pending[-1][0] - pending[0][0]
        fps = (len(pending) - 1) / span if len(pending) > 1 and span > 0 else 30.0
    h, w = pending[0][1].shape[:2]
    sink = VideoSink(path, fps, (w, h))
    for _, frame in pending:
        sink.write(frame)
    pending.clear()
    return sink


def _source_fps(source: Source) -> float | None:
    if isinstance(source, (str, Path)) and Path(source).is_file():
        import cv2

        cap = cv2.VideoCapture(str(source))
        fps = cap.get(cv2.CAP_PROP_FPS)
        cap.release()
        return fps if fps and fps > 0 else None
    return None
