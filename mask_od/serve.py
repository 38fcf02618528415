"""A live mask-compliance monitor served to a browser by one process (FastAPI + uvicorn): the page, JSON, Server-Sent
Events and MJPEG views of a :class:`~mask_od.monitor.Monitor`; loopback only unless a token is set, and then every
request must carry it; paths and queries that look like anything but these routes are refused."""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import hmac
import ipaddress
import json
import re
import threading
import time
from pathlib import Path
from typing import Callable

from mask_od.errors import MaskODError
from mask_od.fileio import refuse_existing, refuse_outputs_on_inputs
from mask_od.monitor import Monitor, ServeConfig, output_paths
from mask_od.sources import is_live

PAGE = Path(__file__).with_name("serve_page.html")
COOKIE = "mask_od_token"
MIN_TOKEN_LEN = 16
QUERY_KEYS = {"token": r"[A-Za-z0-9_\-.~]{1,256}", "after": r"-?[0-9]{1,12}", "limit": r"[0-9]{1,4}"}
SAFE_PATH = re.compile(r"/[A-Za-z0-9_\-/]*(\.(jpg|mjpg))?")


class ServeError(MaskODError, ValueError):
    """The monitor cannot start as asked (an unsafe bind, a bad setting); the message says what to change."""


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_is_loopback(host_header: str) -> bool:
    """Whether an HTTP ``Host`` header (``name[:port]``, ``[v6]:port``) names this machine: 127.x, ::1 or localhost."""
    from urllib.parse import urlsplit

    try:
        name = urlsplit("//" + host_header).hostname
    except ValueError:
        return False
    return bool(name) and is_loopback(name)


def netloc(host: str, port: int | None = None) -> str:
    """``host[:port]`` as a URL writes it: an IPv6 address in brackets ("[::1]:8000")."""
    return (f"[{host}]" if ":" in host else host) + (f":{port}" if port is not None else "")


def validate_config(cfg: ServeConfig) -> None:
    """Refuse an unsafe or impossible setting before anything starts (no model loaded, no port bound)."""
    if not cfg.host or not re.fullmatch(r"[A-Za-z0-9.:%_-]+", cfg.host):
        raise ServeError(f"host {cfg.host!r} is not an address (e.g. 127.0.0.1, ::1, localhost, 0.0.0.0)")
    if not is_loopback(cfg.host) and not cfg.token:
        raise ServeError(f"refusing to bind {netloc(cfg.host)}: any address but this machine's own (127.0.0.1, ::1, "
                         "localhost) needs a token (--token_file FILE on the command line, token= in Python), which every "
                         "request must then carry")
    if cfg.token is not None and (len(cfg.token) < MIN_TOKEN_LEN or not re.fullmatch(QUERY_KEYS["token"], cfg.token)):
        odd = sorted({c for c in cfg.token if not re.fullmatch(QUERY_KEYS["token"], c)})
        why = (f"it holds {', '.join(map(repr, odd))}" if odd else f"it has {len(cfg.token)} characters")
        raise ServeError(f"the token must be {MIN_TOKEN_LEN} to 256 characters of A-Z a-z 0-9 _ - . ~ and {why} "
                         "(python -c \"import secrets; print(secrets.token_urlsafe(24))\" makes one)")
    if not cfg.sources:
        raise ServeError("no source given")
    bad = [f"{name} {value} (allowed: {allowed})" for name, value, ok, allowed in (
        ("port", cfg.port, 0 <= cfg.port < 65536, "0 to 65535, 0 takes a free port"),
        ("max_events", cfg.max_events, cfg.max_events >= 1, "1 or more"),
        ("stream_width", cfg.stream_width, cfg.stream_width >= 32, "32 px or more"),
        ("jpeg_quality", cfg.jpeg_quality, 1 <= cfg.jpeg_quality <= 100, "1 to 100"),
        ("activation_threshold", cfg.tracker.activation_threshold, 0 <= cfg.tracker.activation_threshold <= 0.9,
         "0 to 0.9: a new person needs a detection scoring this + 0.1"),
        ("lost_s", cfg.tracker.lost_s, 0 < cfg.tracker.lost_s < 1e6, "more than 0 s"),
        ("min_frames", cfg.tracker.min_frames, cfg.tracker.min_frames >= 1, "1 or more")) if not ok]
    if bad:
        raise ServeError("bad setting: " + "; ".join(bad))
    sources = [s for s in cfg.sources if isinstance(s, (str, Path)) and not is_live(s)]  # files and folders
    refuse_outputs_on_inputs({("event log" if cfg.event_log and p == Path(cfg.event_log) else f"recording {p.name}"): p
                              for p in output_paths(cfg)},
                             [("source", s) for s in sources], inside=True)
    for p in output_paths(cfg):  # record_dir's recordings included: a record_dir that is a file is refused here
        refuse_existing(p, cfg.overwrite, file=True)  # a folder there would only be found at the end, losing the events


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
        people = ", ".join(f"{k} {v}" for k, v in self.unique_people.items()) or "none"
        return (f"{self.frames} frame{'s' * (self.frames != 1)} in {self.seconds:.1f} s; people: {people}; "
                f"{self.events} event{'s' * (self.events != 1)}, {self.alerts} alert{'s' * (self.alerts != 1)}; "
                f"{self.message}." + (f" Wrote {', '.join(self.outputs)}." if self.outputs else ""))


class TokenGate:
    """ASGI middleware in front of every route: the request path and query must look harmless (no dots, slashes in
    values or unknown keys), and, with a token, carry it (``Authorization: Bearer``, the cookie the page sets, or
    ``?token=`` on the page itself); else 400 / 401 with no body beyond the reason."""

    def __init__(self, app, token: str | None, host: str = "127.0.0.1"):
        self.app, self.token, self.bind = app, token, host

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            return await self.app(scope, receive, send)
        if scope["type"] != "http":  # no websocket routes: refused before they reach the app
            return await send({"type": "websocket.close", "code": 1008})
        from urllib.parse import parse_qsl

        path = scope.get("path", "")
        raw = scope.get("raw_path", path.encode()).decode("latin-1")
        if path.startswith("//"):  # the page's URL ends in "/": url + "/api/health" asks for //api/health
            path, raw = "/" + path.lstrip("/"), "/" + raw.lstrip("/")
            scope = dict(scope, path=path, raw_path=raw.encode("latin-1"))
        query = scope.get("query_string", b"").decode("latin-1")
        try:
            pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query), max_num_fields=4)
        except ValueError:
            pairs = None
        if (not SAFE_PATH.fullmatch(path) or raw != path or pairs is None
                or any(k not in QUERY_KEYS or not re.fullmatch(QUERY_KEYS[k], v) for k, v in pairs)):
            return await _reply(send, 400, b"refused: the path or query holds characters this server never uses")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.token is None and not host_is_loopback(headers.get("host", "")):
            # without a token only this machine's own names may reach it: a web page on another name that resolves to
            # 127.0.0.1 (DNS rebinding) gets nothing
            return await _reply(send, 403, b"refused: this monitor answers only to 127.0.0.1, localhost or [::1] without a token")
        if self.token is not None:
            given = []
            auth = headers.get("authorization", "")
            if auth[:7].lower() == "bearer ":
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


def build_app(monitor: Monitor, token: str | None = None, host: str = "127.0.0.1"):
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
        states = [monitor.state(r.index) for r in monitor.readers]
        errors = [r.error for r in monitor.readers if r.error]
        # unhealthy: stopped, or no source delivering frames while one is down (ended videos alone are fine)
        ok = (monitor.running()
              and (any(st not in ("down", "ended") for st in states) or "down" not in states))
        # 503 when unhealthy, so a load balancer, `curl -f` or a container health check sees it without reading JSON
        return JSONResponse({"ok": ok, "sources": states, "source_errors": errors, "frame_errors": monitor.errors,
                             "last_error": monitor.last_error or (errors[-1] if errors else None)},
                            status_code=200 if ok else 503, headers=nocache)

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

        def part(jpeg: bytes) -> bytes:
            return b"Content-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%b\r\n--frame\r\n" % (len(jpeg), jpeg)

        async def parts():  # Chromium shows a part only once the next one begins or the response ends (measured):
            seq, unshown = 0, False  # so a stalled source's last frame is sent again, and an ended one's ends the stream
            yield b"--frame\r\n"
            while not monitor.stopping.is_set():
                new, jpeg = await monitor.hub.newer(i, seq, 1.0)
                if jpeg is not None:
                    seq, unshown = new, True
                    yield part(jpeg)
                elif monitor.finished(i) and monitor.hub.frames[i][0] <= seq:
                    return
                elif unshown:
                    unshown = False
                    yield part(monitor.hub.frames[i][1])

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

    return TokenGate(app, token, host)


def _server(cfg: ServeConfig, monitor: Monitor, on_ready: Callable[[str], None]):
    """A uvicorn server of the monitor's app; ``on_ready(url)`` once its port is open. A stop signal (or
    ``should_exit``) also ends the endless streams, so that it can close."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):
            # Event.set() takes a lock: a second Ctrl-C arriving while this handler is inside it would wait on that
            # lock forever (a hang only SIGKILL ended). A thread sets it once this handler has returned.
            threading.Thread(target=monitor.stopping.set, daemon=True).start()
            super().handle_exit(sig, frame)

        async def startup(self, sockets=None):
            # the app's lifespan step, done here: uvicorn's lifespan task printed an asyncio CancelledError traceback
            # when a second Ctrl-C cut its shutdown short (a fresh-user try: 4 of 14 bursts of SIGINT)
            monitor.hub.bind(asyncio.get_running_loop())
            await super().startup(sockets)
            if self.started:
                port = self.servers[0].sockets[0].getsockname()[1] if self.servers else cfg.port
                on_ready(f"http://{netloc(cfg.host, port)}/")

    # log_config=None: uvicorn's default calls logging.config.dictConfig, which closes every handler of the process
    # (TensorFlow's absl handler, a notebook's own); its warnings still reach the terminal (or the user's handlers)
    return Server(uvicorn.Config(build_app(monitor, cfg.token, cfg.host), host=cfg.host, port=cfg.port, log_level="warning",
                                 log_config=None, access_log=False, timeout_graceful_shutdown=3, lifespan="off"))


def _close(monitor: Monitor, alert) -> list[str]:
    """Finish the monitor's recordings and event log (the files written), then wait for the alert callback's last
    lines, so that they come before the summary."""
    written = monitor.close()
    if callable(getattr(alert, "wait", None)):
        alert.wait()
    return written


def _summary(monitor: Monitor, alert, written: list[str], message: str) -> ServeSummary:
    return ServeSummary(sum(monitor.processed), time.time() - monitor.t0, monitor.unique_counts(), monitor.num_events,
                        getattr(alert, "count", 0), written, message)


def _bind_error(cfg: ServeConfig) -> ServeError:
    return ServeError(f"could not serve on {netloc(cfg.host, cfg.port)} (in use, or not an address of this machine)")


def _start_error(cfg: ServeConfig) -> ServeError:
    return ServeError(f"the server on {netloc(cfg.host, cfg.port)} did not start (uvicorn's lines above say why)")


def _bind(cfg: ServeConfig):
    """The server's socket, bound here before anything starts: a port in use is one :class:`ServeError` (uvicorn would
    log its own line and exit). uvicorn listens on it."""
    import socket

    try:
        family, _, _, _, address = socket.getaddrinfo(cfg.host, cfg.port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError:
        raise _bind_error(cfg) from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a restart need not wait
        sock.bind(address)
    except OSError:
        sock.close()
        raise _bind_error(cfg) from None
    return sock


def read_token(path: Path | str) -> str:
    """The token stored in the file ``path`` (surrounding whitespace dropped); :class:`ServeError` naming the file when
    it is missing, a folder, unreadable or empty."""
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except IsADirectoryError:
        raise ServeError(f"token file {path} is a folder: give the file that holds the token") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ServeError(f"token file {path} could not be read: {getattr(e, 'strerror', None) or e}") from None
    if not token:
        raise ServeError(f"token file {path} is empty: write the token into it")
    return token


def check_port(cfg: ServeConfig) -> None:
    """Raise :class:`ServeError` now if ``cfg.host:cfg.port`` cannot be had (in use, not an address of this machine):
    a script asks before it loads a model; :func:`serve` binds for good later."""
    _bind(cfg).close()


def _bound_monitor(cfg: ServeConfig, detector, alert: Callable | None):
    """(the bound socket, the monitor, not started): the port is had first, and given back if the monitor fails. Says
    :func:`photo_folder_note` first, when there is one."""
    if said := photo_folder_note(cfg):
        print(said, flush=True)
    sock = _bind(cfg)
    try:
        return sock, Monitor(cfg, detector, alert)
    except BaseException:
        sock.close()
        raise


def photo_folder_note(cfg: ServeConfig) -> str | None:
    """A line for the terminal when a source is a folder of photos and a person needs more than one frame to count:
    each photo is one frame, so unrelated photos count no one (``min_frames`` 1 counts the faces of each)."""
    folders = [str(s) for s in cfg.sources if isinstance(s, (str, Path)) and not is_live(s) and Path(s).is_dir()]
    if not folders or cfg.tracker.min_frames <= 1:
        return None
    return (f"note: {', '.join(folders)}: each photo is one frame, and a person counts after {cfg.tracker.min_frames} "
            "frames of one track (--min_frames): unrelated photos count no one; --min_frames 1 counts the faces of each")


def serve(cfg: ServeConfig, detector, alert: Callable | None = None, on_ready: Callable[[str], None] | None = None) -> ServeSummary:
    """Run the monitor and its web page until Ctrl-C (or SIGTERM); returns a summary once recordings and the event log
    are finished. Raises :class:`ServeError` before anything starts when the setting is unsafe (see
    :func:`validate_config`), or when the port cannot be had. ``on_ready(line)`` gets the URL and whether a token is
    required once the port is open (default: print it)."""
    import signal

    validate_config(cfg)
    sock, monitor = _bound_monitor(cfg, detector, alert)
    note = (" (token required: open it as ?token=TOKEN, or send Authorization: Bearer TOKEN)" if cfg.token
            else " (this machine only)")
    if cfg.host in ("0.0.0.0", "::"):
        note += f"; {cfg.host} is every address of this machine: from another one, open it by this machine's name or address"
    server = _server(cfg, monitor, lambda url: (on_ready or print)(url + note))
    main = threading.current_thread() is threading.main_thread()
    old_term = signal.signal(signal.SIGTERM, signal.default_int_handler) if main else None  # SIGTERM ends as cleanly as Ctrl-C
    monitor.start()
    message = "stopped"
    try:
        server.run(sockets=[sock])
        if monitor.stopping.is_set():  # set by the signal (Python re-raises SIGINT only where it was not ignored)
            message = "stopped by Ctrl-C or a stop signal"
    except SystemExit:  # the port is bound already (_bind): uvicorn stopped for another reason at start-up
        raise _start_error(cfg) from None
    except KeyboardInterrupt:
        message = "stopped by Ctrl-C or a stop signal"
    finally:
        monitor.stopping.set()
        written = _close(monitor, alert)
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    return _summary(monitor, alert, written, message)


class BackgroundMonitor:
    """The monitor served from a thread of this process, e.g. in a notebook: ``IFrame(m.url, 1200, 700)`` shows the
    page, ``m.stop()`` ends it and returns the summary (recordings and event log finished); ``with
    BackgroundMonitor(...) as m:`` stops it at the block's end, and a process that exits without ``stop()`` stops it on
    the way out (else its threads die mid-write: an abort, a half-written log). ``m.url`` ends in "/" (``m.url +
    "api/stats"``; ``"/api/stats"`` works too). Raises :class:`ServeError` like :func:`serve`. ``cfg.port = 0`` takes a
    free port."""

    def __init__(self, cfg: ServeConfig, detector, alert: Callable | None = None, timeout_s: float = 30.0):
        validate_config(cfg)
        self._socket, self.monitor = _bound_monitor(cfg, detector, alert)
        self.cfg, self.alert, self.url = cfg, alert, None
        ready = threading.Event()
        self._server = _server(cfg, self.monitor, lambda url: (setattr(self, "url", url), ready.set()))
        self.monitor.start()
        self._thread = threading.Thread(target=self._run, daemon=True, name="monitor-server")
        self._thread.start()
        atexit.register(self.stop)
        self._summary: ServeSummary | None = None
        deadline = time.monotonic() + timeout_s
        while not ready.wait(0.05) and self._thread.is_alive() and time.monotonic() < deadline:
            pass
        if self.url is None:
            self.stop()
            raise _start_error(cfg)

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self._socket])
        except SystemExit:  # uvicorn could not start: the constructor says so
            pass

    def stop(self) -> ServeSummary:
        """End serving and monitoring; the summary (the same one again on a second call)."""
        atexit.unregister(self.stop)
        if getattr(self, "_summary", None) is None:
            self.monitor.stopping.set()
            self._server.should_exit = True
            self._thread.join(timeout=10.0)
            self._summary = _summary(self.monitor, self.alert, _close(self.monitor, self.alert), "stopped")
        return self._summary

    def __enter__(self) -> "BackgroundMonitor":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
