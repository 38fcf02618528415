"""Train on 80% of ../shared/data/face-mask with recipe_face_mask.yaml, score on the other 20%, export and score every file.

python benchmarks/recipe_face_mask.py [--out NAME] [--export_sizes 640 320] [--copy_paste N] [key=value ...]  (overrides, e.g. time_budget_min=10)
Writes benchmarks/results/NAME/ (default face_mask; a run already there is resumed): the workspace (records), the run
(checkpoints, TensorBoard, eval plots), exports per size, training_curves.png and summary.json: mAP@0.5 per class against
minutes during training, and per class for the SavedModel and each TFLite file of each export on all val images."""

import json
import sys
import time
from pathlib import Path

from _common import FACE_MASK, RESULTS, WEIGHTS, need


def main(argv) -> None:
    import argparse

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="face_mask", help="folder under benchmarks/results/")
    p.add_argument("--export_sizes", type=int, nargs="*", default=None, help="export sizes (default: the run's size)")
    p.add_argument("--copy_paste", type=int, default=0, metavar="N",
                   help="add N copy-pasted versions of each training photo (benchmarks/copy_paste_faces.py; an A/B lever)")
    p.add_argument("overrides", nargs="*", help="key=value overrides of recipe_face_mask.yaml")
    a = p.parse_args(argv)
    from mask_od.config import build_config, parse_key_values
    from mask_od.evaluate_plots import plot_training_curves
    from mask_od.export import MAX_MAP50_DROP, export_model, parity_failures
    from mask_od.prepare import prepare_dataset
    from mask_od.train import train

    need(FACE_MASK)
    out = RESULTS / a.out
    overrides = parse_key_values(a.overrides)
    data = prepare_dataset(FACE_MASK / "annotations", out / "workspace", FACE_MASK / "images", test_ratio=0.2, seed=0,
                           overwrite=True, progress=False)
    print("split:", data.report["split"], flush=True)
    train_records = data.train_records
    if a.copy_paste:
        from copy_paste_faces import write_copy_paste_record

        if len(data.records["train"]) != 1:  # a glob of "train*.record" would miss shards named train.record-0000N-of-…
            raise SystemExit(f"--copy_paste expects one train.record, not shards: {data.records['train']}")
        pasted = Path(data.train_records).with_name("train_paste.record")
        seed = int(overrides.get("seed", 0))
        print("copy-paste:", write_copy_paste_record(data.split_lists["train"], data.label_map, pasted, a.copy_paste, seed,
                                                     overwrite=True), flush=True)
        train_records = str(Path(data.train_records).with_name("train*.record"))  # train.record and train_paste.record
    config = build_config(Path(__file__).with_name("recipe_face_mask.yaml"), train_records=train_records,
                          val_records=data.test_records, label_map=str(data.label_map), output_dir=str(out / "run"),
                          pretrained=str(WEIGHTS) if WEIGHTS.is_file() else "imagenet", **overrides)
    t0 = time.perf_counter()
    result = train(config)
    minutes = (time.perf_counter() - t0) / 60
    plan = json.loads((out / "run" / "plan.json").read_text())
    summary = {"train_minutes_this_session": round(minutes, 2), "plan": plan, "steps": result.step,
               "best_checkpoint": result.best_checkpoint, "best_mAP50_during_training": result.best_map50,
               "curve": [{"minutes": h["minutes"], "step": h["step"], "mAP50": h["mAP50"], **h["per_class_AP50"]} for h in result.history]}
    val_images = data.report["split"]["test"]
    for size in a.export_sizes or [config.image_size]:
        t1 = time.perf_counter()
        # the export's own parity check would stop at a file it refuses: the benchmark records every file instead and
        # lists what that check (export.parity_failures at MAX_MAP50_DROP) finds wrong with each
        rep = export_model(config.output_dir, out / f"export_{size}", check_records=data.test_records, num_check=val_images,
                           overwrite=True, image_size=size, max_map50_drop=1.0)
        check = rep["check"]
        summary[f"export_{size}"] = {"export_minutes": round((time.perf_counter() - t1) / 60, 2), "images": check["images"]} | {
            k: {"mAP50": v["mAP50"], "AP50_per_class": v["AP50_per_class"], **({"agreement": v["agreement"]} if "agreement" in v else {})}
            for k, v in check.items() if isinstance(v, dict)}
        for k, v in summary[f"export_{size}"].items():
            if isinstance(v, dict):
                refused = [] if k == "saved_model" else parity_failures(check | {"max_map50_drop": MAX_MAP50_DROP}, [k])
                v["parity_failures"] = refused
                print(f"{size}px {k:12s} mAP@0.5 {v['mAP50']:.3f}  " + "  ".join(f"{n} {x:.3f}" for n, x in v["AP50_per_class"].items() if x is not None)
                      + "".join(f"  REFUSED by the export's parity check: {r}" for r in refused), flush=True)
    plot_training_curves(config.output_dir)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k not in ("curve", "plan")}, indent=1))


if __name__ == "__main__":
    from mask_od.train import TrainingInterrupted

    try:
        main(sys.argv[1:])
    except TrainingInterrupted as e:  # Ctrl-C: a checkpoint was saved; the same command resumes (as scripts/train.py says)
        print(e, flush=True)
        raise SystemExit(130) from None
