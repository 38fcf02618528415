"""Latency per image (median of many, batch 1, 2 threads) of the SavedModel and each TFLite variant at 320 and 640,
model-only and end to end, with the mAP of each variant on the validation split.

python benchmarks/latency.py [--run_dir benchmarks/results/face_mask/run] [--sizes 320 640] [--runs 100]
Needs a trained run (benchmarks/recipe_face_mask.py makes one). The weights are exported at each size."""

import os

os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "2")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "2")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from _common import RESULTS  # noqa: E402


def median_ms(fn, runs: int, warmup: int = 5) -> float:
    for _ in range(warmup):
        fn()
    t = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
    return float(np.median(t) * 1000)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--run_dir", default=str(RESULTS / "face_mask" / "run"))
    p.add_argument("--sizes", type=int, nargs="+", default=[320, 640])
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--num_check", type=int, default=137, help="validation images for the mAP of each variant")
    a = p.parse_args()
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(2)
    from mask_od.config import build_config
    from mask_od.detect import Detector, letterbox_rgb
    from mask_od.evaluate import examples_from_records
    from mask_od.export import export_model

    cfg = build_config(f"{a.run_dir}/config.yaml")
    images = [img for img, *_ in examples_from_records(cfg.val_records, 20)]
    results = {}
    for size in a.sizes:
        out = RESULTS / f"export_{size}"
        report = export_model(a.run_dir, out, check_records=cfg.val_records, num_check=a.num_check, overwrite=True, image_size=size)
        row = {}
        for name in ("saved_model", "float32", "float16", "int8"):
            path = out / ("saved_model" if name == "saved_model" else f"model_{name}.tflite")
            det = Detector(path, score_threshold=0.3, num_threads=2)
            if det.kind == "tflite":
                canvas = letterbox_rgb(images[0], size)[0][None]
                inp = det._in
                x = canvas if inp["dtype"] == np.float32 else np.round(canvas / (inp["quantization"][0] or 1) + inp["quantization"][1]).astype(inp["dtype"])
                det._interp.set_tensor(inp["index"], x)
                model_only = median_ms(det._interp.invoke, a.runs)
            else:
                sq = tf.constant(np.ascontiguousarray(letterbox_rgb(images[0], size)[0].astype(np.uint8))[None])
                model_only = median_ms(lambda: det._fn(input_tensor=sq), a.runs)
            k = iter(range(10**9))
            end_to_end = median_ms(lambda: det.detect(images[next(k) % len(images)]), a.runs)
            check = report.get("check", {}).get(name, {})
            row[name] = {"model_only_ms": round(model_only, 2), "end_to_end_ms": round(end_to_end, 2),
                         "mAP50": check.get("mAP50"), "mAP": check.get("mAP"), "agreement": check.get("agreement"),
                         "file_MB": round(report["variants"].get(name, {}).get("bytes", 0) / 1e6, 2) or None}
            print(size, name, row[name], flush=True)
        results[size] = row
    (RESULTS / "latency.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
