"""End-to-end FPS of live detection (decode, detect, draw, write) on ../shared/data/video/street-masks.mp4 at
1366x768, 2 threads, for the TFLite 320 variants and the SavedModel, against model-only latency.

python benchmarks/live_fps.py [--export_dir benchmarks/results/export_320]   (benchmarks/latency.py makes the exports)"""

import argparse
import json
import time

import numpy as np
from _common import RESULTS, VIDEO, need


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--export_dir", default=str(RESULTS / "export_320"))
    p.add_argument("--variants", nargs="+", default=["model_float32.tflite", "model_int8.tflite", "model_float16.tflite", "saved_model"])
    a = p.parse_args()
    need(VIDEO)
    from mask_od.detect import Detector
    from mask_od.live import run_live

    out = {}
    for v in a.variants:
        det = Detector(f"{a.export_dir}/{v}", score_threshold=0.5, num_threads=2)
        det.predict(np.zeros((768, 1366, 3), np.uint8))  # warm-up
        s = run_live(det, VIDEO, display="none", output_video=RESULTS / f"live_{v.split('.')[0]}.mp4",
                     log_path=RESULTS / f"live_{v.split('.')[0]}.jsonl", overwrite=True, print_every_s=0)
        model_ms = None
        if det.kind == "tflite":
            run = det.model_only(np.zeros((768, 1366, 3), np.uint8))
            t = []
            for _ in range(50):
                t0 = time.perf_counter()
                run()
                t.append(time.perf_counter() - t0)
            model_ms = float(np.median(t) * 1000)
        out[v] = {"frames": s.frames, "fps": round(s.fps, 1), "ms_per_frame": round(1000 / s.fps, 1) if s.fps else None,
                  "model_only_ms": round(model_ms, 2) if model_ms else None, "detections": s.detections_per_class}
        print(v, out[v], flush=True)
    (RESULTS / "live_fps.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
