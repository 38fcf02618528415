"""Training throughput (images/s) at 320 and 640 on this machine's CPU, on the face-mask TFRecords.

python benchmarks/train_throughput.py [--steps 40] [--sizes 320 640] [--batch_size 8]
Needs the records that benchmarks/recipe_face_mask.py writes (or pass --records). The first 10 steps (tracing,
warm-up) are not counted.
XLA does not speed up training on these CPUs (2026-12-01, 2-core machine, 320 px, batch 8, recipe settings): the train
step with ``jit_compile=True`` does not compile (XLA's CPU backend lacks ResizeNearestNeighborGrad, the FPN's
upsampling gradient), and auto-clustering (TF_XLA_FLAGS="--tf_xla_auto_jit=2 --tf_xla_cpu_global_jit") ran at 1.1 img/s
against 11.1 img/s without it."""

import argparse
import json
import shutil
import tempfile

from _common import RESULTS, WEIGHTS


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--records", default=str(RESULTS / "face_mask" / "workspace" / "annotations" / "train.record"))
    p.add_argument("--label_map", default=str(RESULTS / "face_mask" / "workspace" / "annotations" / "label_map.pbtxt"))
    p.add_argument("--sizes", type=int, nargs="+", default=[320, 640])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch_size", type=int, default=8)
    a = p.parse_args()
    from mask_od.config import build_config
    from mask_od.train import train

    out = {}
    for size in a.sizes:
        tmp = tempfile.mkdtemp()
        try:
            cfg = build_config(train_records=a.records, val_records="", label_map=a.label_map, image_size=size, batch_size=a.batch_size,
                               steps=a.steps, log_every=10, checkpoint_every=10**6, output_dir=tmp,
                               pretrained=str(WEIGHTS) if WEIGHTS.is_file() else "none")
            train(cfg, progress=False)
            rows = [json.loads(x) for x in open(f"{tmp}/train_log.jsonl")][1:]  # after the first 10 steps
            ips = sum(r["images_per_second"] for r in rows) / len(rows)
            out[size] = {"images_per_second": round(ips, 2), "batch_size": a.batch_size, "steps_timed": a.steps - 10}
            print(size, out[size], flush=True)
        finally:
            shutil.rmtree(tmp)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "train_throughput.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
