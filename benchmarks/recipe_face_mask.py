"""Train on 80% of ../shared/data/face-mask with recipe_face_mask.yaml and score on the other 20%.

python benchmarks/recipe_face_mask.py [--out NAME] [key=value ...]   (overrides of the recipe, e.g. steps=200)
Writes benchmarks/results/NAME/ (default face_mask; a run already there is resumed): the workspace (records), the run (checkpoints, TensorBoard, eval plots),
training_curves.png and summary.json (mAP against minutes, per-class AP, the best checkpoint also run at 640)."""

import json
import sys
import time
from pathlib import Path

from _common import FACE_MASK, RESULTS, WEIGHTS, need


def main(argv) -> None:
    import argparse

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="face_mask", help="folder under benchmarks/results/")
    p.add_argument("overrides", nargs="*", help="key=value overrides of recipe_face_mask.yaml")
    a = p.parse_args(argv)
    from mask_od.config import build_config, parse_key_values
    from mask_od.dataset import prepare_dataset
    from mask_od.evaluate import format_metrics
    from mask_od.evaluate_plots import plot_training_curves
    from mask_od.train import evaluate_model, load_trained_model, train

    need(FACE_MASK)
    out = RESULTS / a.out
    data = prepare_dataset(FACE_MASK / "annotations", out / "workspace", FACE_MASK / "images", test_ratio=0.2, seed=0,
                           overwrite=True, progress=False)
    print("split:", data.report["split"])
    config = build_config(Path(__file__).with_name("recipe_face_mask.yaml"), train_records=data.train_records,
                          val_records=data.test_records, label_map=str(data.label_map), output_dir=str(out / "run"),
                          pretrained=str(WEIGHTS) if WEIGHTS.is_file() else "imagenet", **parse_key_values(a.overrides))
    t0 = time.perf_counter()
    result = train(config)
    minutes = (time.perf_counter() - t0) / 60
    summary = {"train_minutes": round(minutes, 1), "steps": result.step, "images_per_second_end": round(result.images_per_second, 2),
               "history": result.history, "best_checkpoint": result.best_checkpoint}
    for size in sorted({config.image_size, 640}):
        model, cfg, lm = load_trained_model(config.output_dir, image_size=size)
        m = evaluate_model(model, cfg, lm, data.test_records, out_dir=out / "run" / f"eval_best_{size}")
        summary[f"best_at_{size}"] = {k: m[k] for k in ("mAP", "mAP50", "mAP75", "AR100")} | {
            "AP50_per_class": {k: v["AP50"] for k, v in m["per_class"].items()}}
        print(f"best checkpoint at {size}px:", format_metrics(m))
    plot_training_curves(config.output_dir)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k != "history"}, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
