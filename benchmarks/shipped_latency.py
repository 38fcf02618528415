"""Latency of the shipped model's TFLite files (each size and variant) beside the AIZOO face-mask peer, in one run
(batch 1, 2 threads, interleaved rounds, median), model only and through Detector.predict (letterbox and decoding
included) on a 1366x768 frame; then the live FPS of `scripts/detect_live.py` at each --size on
../shared/data/video/street-masks.mp4.

python benchmarks/shipped_latency.py [--model_dir models/face_mask] [--runs 200] [--rounds 10]"""

import argparse
import json

import numpy as np
from _common import RESULTS, ROOT, SHARED, VIDEO, need
from latency import interleaved_medians_ms

PEER = SHARED / "peers" / "aizoo_face_mask" / "face_mask_detection.tflite"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model_dir", default=str(ROOT / "models" / "face_mask"))
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--rounds", type=int, default=10)
    a = p.parse_args()
    from ai_edge_litert.interpreter import Interpreter

    from mask_od.detect import Detector
    from mask_od.live import run_live

    frame = np.zeros((768, 1366, 3), np.uint8)
    fns = {}
    from mask_od.shipped import read_manifest

    manifest = read_manifest(a.model_dir)
    files = manifest.get("tflite_files") or {str(manifest.get("tflite_image_size", 320)): {v: f"model_{v}.tflite" for v in ("float32", "int8")}}
    for size, names in files.items():
        for v, name in names.items():
            det = Detector(f"{a.model_dir}/{name}", num_threads=2)
            fns[f"{size} {v} model only"] = det.model_only(frame)
            fns[f"{size} {v} predict"] = (lambda d: lambda: d.predict(frame))(det)
    peer = Interpreter(model_path=str(need(PEER)), num_threads=2)
    peer.allocate_tensors()
    inp = peer.get_input_details()[0]
    peer.set_tensor(inp["index"], np.zeros(inp["shape"], inp["dtype"]))
    fns["AIZOO peer (260 px, 2 classes) model only"] = peer.invoke
    out = {"median_ms": {k: round(v, 2) for k, v in interleaved_medians_ms(fns, a.runs, a.rounds).items()}}
    for k, v in out["median_ms"].items():
        print(f"{k:45s} {v:7.2f} ms", flush=True)
    for size, names in files.items():
        det = Detector(f"{a.model_dir}/{names['int8']}", num_threads=2)
        s = run_live(det, need(VIDEO), display="none", output_video=RESULTS / f"shipped_live_{size}.mp4", overwrite=True, print_every_s=0)
        out[f"live_{size}_int8"] = {"frames": s.frames, "fps": round(s.fps, 1), "detections": s.detections_per_class}
        print(f"live, {size} int8:", out[f"live_{size}_int8"], flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "shipped_latency.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
