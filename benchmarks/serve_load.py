"""Load on the live monitor (loopback only, bounded in time): scripts/serve.py on ../shared/data/video/street-masks.mp4
(looped, the shipped model) with 1, 4 and 16 MJPEG viewers at once; the processing FPS of each phase (from /api/stats),
the frames each viewer got, and the server's memory over a longer run with 16 viewers; beside detect_live.py alone on
the same video (run_live, no display). The viewers run in this process, on the same cores as the server.

python benchmarks/serve_load.py [--phase_s 20] [--memory_s 120]"""

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request

from _common import RESULTS, ROOT, VIDEO, need


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Viewer(threading.Thread):
    """Reads /stream/0.mjpg and counts the JPEG parts that arrive."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.port, self.frames, self.stop = port, 0, threading.Event()

    def run(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            s.sendall(b"GET /stream/0.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            tail = b""
            while not self.stop.is_set():
                chunk = s.recv(1 << 16)
                if not chunk:
                    return
                data = tail + chunk
                self.frames += data.count(b"Content-Type: image/jpeg")
                tail = data[-23:]  # shorter than the marker: a part split across reads is counted once


def stats(port: int) -> dict:
    return json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/stats", timeout=10))


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def phase(port: int, pid: int, viewers: int, seconds: float, sample_s: float = 0.0) -> dict:
    vs = [Viewer(port) for _ in range(viewers)]
    for v in vs:
        v.start()
    time.sleep(2.0)  # let the viewers connect
    s0, t0, c0, got0 = stats(port), time.time(), cpu_s(pid), [v.frames for v in vs]
    samples = []
    while (left := seconds - (time.time() - t0)) > 0:
        time.sleep(min(sample_s or left, left))
        samples.append((round(time.time() - t0, 1), round(rss_mb(pid), 1)))
    s1, t1, c1 = stats(port), time.time(), cpu_s(pid)
    for v in vs:
        v.stop.set()
    dt, frames = t1 - t0, s1["frames"] - s0["frames"]
    per_viewer = [(v.frames - g) / dt for v, g in zip(vs, got0)]
    return {"viewers": viewers, "seconds": round(dt, 1), "processing_fps": round(frames / dt, 2),
            "server_cpu_ms_per_frame": round(1000 * (c1 - c0) / frames, 1) if frames else None,
            "load_avg_1min": round(os.getloadavg()[0], 1),
            "viewer_fps_min": round(min(per_viewer), 2), "viewer_fps_mean": round(sum(per_viewer) / len(per_viewer), 2),
            "rss_mb": samples}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--phase_s", type=float, default=20.0, help="seconds of each of the 1 / 4 / 16 viewer phases")
    p.add_argument("--memory_s", type=float, default=120.0, help="seconds of the memory run with 16 viewers")
    p.add_argument("--rounds", type=int, default=2, help="times the 1 / 4 / 16 phases run, in turn (the machine's load drifts)")
    a = p.parse_args()
    need(VIDEO)
    from mask_od.detect import Detector
    from mask_od.live import run_live
    from mask_od.shipped import default_live_model

    det = Detector(default_live_model(), score_threshold=0.3, num_threads=2)
    c0 = time.process_time()
    base = run_live(det, VIDEO, display="none", print_every_s=0)
    out = {"detect_live_alone": {"frames": base.frames, "fps": round(base.fps, 2),
                                 "cpu_ms_per_frame": round(1000 * (time.process_time() - c0) / base.frames, 1),
                                 "load_avg_1min": round(os.getloadavg()[0], 1)}}
    print("detect_live.py alone (run_live, score 0.3, no display):", out["detect_live_alone"], flush=True)
    port = free_port()
    server = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "serve.py"), "--source", str(VIDEO), "--loop", "--port", str(port)],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    try:
        deadline = time.time() + 60
        while True:
            try:
                if stats(port)["frames"] > 30:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                raise SystemExit("the monitor did not start within 60 s")
            time.sleep(0.5)
        out["phases"] = []
        for _ in range(a.rounds):
            for n in (1, 4, 16):
                r = phase(port, server.pid, n, a.phase_s)
                out["phases"].append(r)
                print(f"{n:2d} viewer(s): processing {r['processing_fps']} FPS, server CPU {r['server_cpu_ms_per_frame']} ms "
                      f"per frame, each viewer got {r['viewer_fps_min']}-{r['viewer_fps_mean']} (min-mean) frames/s, server RSS "
                      f"{r['rss_mb'][-1][1]} MB, load average {r['load_avg_1min']}", flush=True)
        m = phase(port, server.pid, 16, a.memory_s, sample_s=10.0)
        out["memory_run"] = m
        rss = [x for _, x in m["rss_mb"]]
        print(f"16 viewers for {m['seconds']} s: processing {m['processing_fps']} FPS; server RSS every 10 s (MB): {rss}", flush=True)
        def mean(n, key):
            v = [r[key] for r in out["phases"] if r["viewers"] == n]
            return sum(v) / len(v)

        f1, f16 = mean(1, "processing_fps"), mean(16, "processing_fps")
        out["fps_16_over_1"] = round(f16 / f1, 3) if f1 else None
        out["cpu_ms_per_frame_1_4_16"] = [round(mean(n, "server_cpu_ms_per_frame"), 1) for n in (1, 4, 16)]
        out["rss_growth_mb"] = round(rss[-1] - rss[0], 1) if rss else None
        print(f"processing FPS with 16 viewers / with 1 (mean of the rounds): {out['fps_16_over_1']}; server CPU ms per frame "
              f"with 1 / 4 / 16 viewers: {out['cpu_ms_per_frame_1_4_16']}; RSS growth over the memory run: "
              f"{out['rss_growth_mb']} MB; detect_live.py alone: {out['detect_live_alone']['fps']} FPS", flush=True)
    finally:
        server.terminate()
        server.wait(30)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serve_load.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
