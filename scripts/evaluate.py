"""COCO metrics and plots of a trained run (checkpoint) or an exported model (SavedModel folder or .tflite file) on
TFRecords or a VOC folder: python scripts/evaluate.py --model PATH (--records GLOB | --xml_dir DIR) [--out_dir DIR]."""

import argparse
import json

import _common  # noqa: F401


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", required=True, help="run directory, exported saved_model/ folder, or .tflite file")
    p.add_argument("--records", default=None, help="TFRecord file or glob (default: the run's val_records)")
    p.add_argument("--xml_dir", default=None, help="evaluate on a LabelImg VOC folder instead")
    p.add_argument("--image_dir", default=None)
    p.add_argument("--out_dir", default=None, help="metrics.json and PNG plots (default: <model>/eval or beside it)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")
    p.add_argument("--num_threads", type=int, default=2)
    a = p.parse_args(argv)
    from pathlib import Path

    from mask_od.evaluate import evaluate, examples_from_records, examples_from_voc, format_metrics

    model = Path(a.model)
    if (model / "config.yaml").is_file() and (model / "checkpoints").is_dir():  # a training run
        from mask_od.inference import detections_to_numpy, make_detection_module
        from mask_od.train import load_trained_model

        net, config, label_map = load_trained_model(model)
        module = make_detection_module(net, config)
        predict = lambda img: detections_to_numpy(module.serve(img[None]))  # noqa: E731
        records = a.records or config.val_records
        out_dir = Path(a.out_dir or model / "eval")
    else:
        from mask_od.detect import Detector

        det = Detector(model, score_threshold=0.0, num_threads=a.num_threads)
        predict, label_map = det.predict, det.label_map
        records = a.records
        if not records and not a.xml_dir:
            cfg = next((c for c in (model / "config.yaml", model.parent / "config.yaml") if c.is_file()), None)
            if cfg is None:
                print("error: pass --records or --xml_dir")
                return 2
            from mask_od.config import build_config

            records = build_config(cfg).val_records
        out_dir = Path(a.out_dir or (model.parent if model.is_file() else model.parent) / f"eval_{model.stem}")
    examples = examples_from_voc(a.xml_dir, label_map, a.image_dir, a.limit) if a.xml_dir else examples_from_records(records, a.limit)
    m = evaluate(predict, examples, label_map, out_dir=out_dir)
    print(format_metrics(m))
    print(f"metrics and plots: {out_dir}")
    print(json.dumps({k: m[k] for k in ("mAP", "mAP50", "mAP75", "AR100")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
