"""COCO metrics and plots of a trained run (checkpoint) or an exported model (SavedModel folder or .tflite file) on
TFRecords or a VOC folder: python scripts/evaluate.py --model PATH (--records GLOB | --xml_dir DIR) [--out_dir DIR]."""

import argparse
import json

from mask_od.runtime import quiet_tensorflow

quiet_tensorflow()  # TensorFlow's C++ logs quieted before it starts


def main(argv=None) -> int:
    from mask_od.cli import at_least, error_exit

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", required=True, help="run directory, exported saved_model/ folder, or .tflite file")
    p.add_argument("--records", default=None, help="TFRecord file or glob (default: the run's val_records)")
    p.add_argument("--xml_dir", default=None, help="evaluate on a LabelImg VOC folder instead")
    p.add_argument("--image_dir", default=None)
    p.add_argument("--out_dir", default=None, help="metrics.json and PNG plots (default: <model>/eval or beside it)")
    p.add_argument("--limit", type=at_least(1), default=None, help="evaluate only the first N images (of the records; or of the XML files, sorted by path)")
    p.add_argument("--which", default="best", choices=["best", "latest"],
                   help="a run folder's checkpoint: best (highest on val during training, default) or latest (the last one)")
    p.add_argument("--num_threads", type=at_least(1), default=2)
    a = p.parse_args(argv)
    from pathlib import Path

    from mask_od.errors import MaskODError
    from mask_od.evaluate import check_out_dir, evaluate, examples_from_records, examples_from_voc, format_metrics
    from mask_od.fileio import refuse_outputs_on_inputs
    from mask_od.input_pipeline import resolve_records
    from mask_od.runs import predictor

    try:
        predict, label_map, run_records, default_out = predictor(a.model, a.num_threads, a.which)
        records = a.records or run_records
        if not records and not a.xml_dir:
            raise MaskODError(f"{a.model}: no val_records known for it; pass --records or --xml_dir")
        out_dir = Path(a.out_dir) if a.out_dir else default_out
        inputs = [("--model", a.model), ("--xml_dir", a.xml_dir), ("--image_dir", a.image_dir)]
        inputs += [("--records", f) for f in ([] if a.xml_dir else resolve_records(records))]
        refuse_outputs_on_inputs({"--out_dir": out_dir}, inputs, replaces=False)
        check_out_dir(out_dir)  # new, empty or an earlier evaluation: never a folder of the user's own files
        if a.xml_dir:
            examples = examples_from_voc(a.xml_dir, label_map, a.image_dir, a.limit)
        else:
            examples = examples_from_records(records, a.limit, label_map, f"the label map of {a.model}")
        m = evaluate(predict, examples, label_map, out_dir=out_dir)
    except (MaskODError, FileNotFoundError, FileExistsError) as e:
        return error_exit(e)
    print(format_metrics(m))
    print(f"metrics and plots: {out_dir}")
    print(json.dumps({k: m[k] for k in ("mAP", "mAP50", "mAP75", "AR100")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
