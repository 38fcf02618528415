"""Latency per image (median of many, batch 1, 2 threads) of the SavedModel and each TFLite variant at 320 and 640,
model-only and end to end, with the mAP of each variant on the validation split.

python benchmarks/latency.py [--run_dir benchmarks/results/face_mask/run] [--sizes 320 640] [--runs 100] [--rounds 5]
Needs a trained run (benchmarks/recipe_face_mask.py makes one). The weights are exported at each size. The variants
are timed in interleaved rounds (runs / rounds calls each per round) so that a slow spell of this shared machine
falls on all of them alike; the median is over all calls."""

import os

os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "2")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "2")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from _common import RESULTS  # noqa: E402

VARIANTS = ("saved_model", "float32", "float16", "int8")


def interleaved_medians_ms(fns: dict, runs: int, rounds: int, warmup: int = 5) -> dict:
    """Median milliseconds of each zero-argument callable, timed round-robin: ``rounds`` rounds of ``runs // rounds``."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            for _ in range(max(1, runs // rounds)):
                t0 = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t0)
    return {k: float(np.median(v) * 1000) for k, v in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--run_dir", default=str(RESULTS / "face_mask" / "run"))
    p.add_argument("--out", default=str(RESULTS), help="where export_<size>/ and latency.json go")
    p.add_argument("--sizes", type=int, nargs="+", default=[320, 640])
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--num_check", type=int, default=137, help="validation images for the mAP of each variant")
    a = p.parse_args()
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(2)
    from mask_od.config import build_config
    from mask_od.detect import Detector
    from mask_od.evaluate import examples_from_records
    from mask_od.export import export_model

    cfg = build_config(f"{a.run_dir}/config.yaml")
    images = [img for img, *_ in examples_from_records(cfg.val_records, 20)]
    results = {}
    for size in a.sizes:
        out = os.path.join(a.out, f"export_{size}")
        report = export_model(a.run_dir, out, check_records=cfg.val_records, num_check=a.num_check, overwrite=True, image_size=size)
        dets = {v: Detector(os.path.join(out, "saved_model" if v == "saved_model" else f"model_{v}.tflite"), score_threshold=0.3,
                            num_threads=2) for v in VARIANTS}
        model_only = interleaved_medians_ms({v: d.model_only(images[0], size) for v, d in dets.items()}, a.runs, a.rounds)

        def end_to_end(d):
            k = iter(range(10**9))
            return lambda: d.predict(images[next(k) % len(images)])

        e2e = interleaved_medians_ms({v: end_to_end(d) for v, d in dets.items()}, a.runs, a.rounds)
        row = {}
        for v in VARIANTS:
            check = report.get("check", {}).get(v, {})
            row[v] = {"model_only_ms": round(model_only[v], 2), "end_to_end_ms": round(e2e[v], 2),
                      "mAP50": check.get("mAP50"), "mAP": check.get("mAP"), "agreement": check.get("agreement"),
                      "file_MB": round(report["variants"].get(v, {}).get("bytes", 0) / 1e6, 2) or None}
            print(size, v, row[v], flush=True)
        results[size] = row
    with open(os.path.join(a.out, "latency.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
