"""Export a run: SavedModel (TF OD API signature) + TFLite float32/float16/int8 with NMS inside, each checked.
python scripts/export.py --run_dir workspace/models/RUN --out_dir workspace/exported-models/RUN [--image_size 640]."""

import argparse
import json
import signal

from mask_od.runtime import quiet_tensorflow

quiet_tensorflow()  # TensorFlow's C++ logs quieted before it starts


def main(argv=None) -> int:
    from mask_od.cli import at_least
    from mask_od.export import INT8_FLOAT_LAYERS, MAX_MAP50_DROP, NUM_CALIBRATION, TFLITE_VARIANTS

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--run_dir", required=True, help="the training run folder (output_dir of train.py: config.yaml, checkpoints)")
    p.add_argument("--out_dir", required=True, help="new folder for saved_model/, the .tflite files, label_map.pbtxt and export_report.json")
    p.add_argument("--tflite", nargs="*", default=list(TFLITE_VARIANTS), choices=list(TFLITE_VARIANTS),
                   help="TFLite variants to write (default: " + " ".join(TFLITE_VARIANTS) + "; none: --tflite alone)")
    p.add_argument("--check_records", default=None, help="records for the parity check (default: the run's val_records)")
    p.add_argument("--calibration_records", default=None, help="records for int8 calibration (default: train_records)")
    p.add_argument("--num_check", type=int, default=50, help="images of the check records each TFLite file is checked on (at least 1)")
    p.add_argument("--num_calibration", type=int, default=NUM_CALIBRATION,
                   help="int8: training images to calibrate on (default %(default)s; all of them when the records hold fewer; read as "
                        "needed, not held in memory; the count used is in export_report.json)")
    p.add_argument("--image_size", type=int, default=None,
                   help="input size of the exported files (a multiple of 32, e.g. 640 for small faces; default: the run's size): "
                        "the network is fully convolutional, so the same weights run at another size")
    p.add_argument("--which", default="best", choices=["best", "latest"], help="best: the checkpoint that scored highest on val during training (default); latest: the last one")
    p.add_argument("--max_map50_drop", type=float, default=MAX_MAP50_DROP, help="largest mAP@0.5 drop of a TFLite file vs the SavedModel, a fraction (0.01 = 1 point; refused when the 95%% bootstrap interval lies above it)")
    p.add_argument("--int8_float_layers", type=at_least(0), default=INT8_FLOAT_LAYERS,
                   help="int8: layers with the largest quantization error kept float (0: every layer int8)")
    p.add_argument("--metadata", choices=["auto", "on", "off"], default="auto",
                   help="TFLite Metadata for MediaPipe Tasks: auto writes it when its tool venv is built (scripts/"
                        "write_metadata.py --build), on builds that venv first when missing (~100 s, ~1 GB once), off skips it")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export in --out_dir (never a run folder)")
    a = p.parse_args(argv)
    from mask_od.cli import error_exit
    from mask_od.errors import MaskODError
    from mask_od.export import export_model

    try:
        r = export_model(a.run_dir, a.out_dir, a.tflite, a.check_records, a.calibration_records, a.num_check,
                         a.num_calibration, a.which, a.overwrite, image_size=a.image_size, max_map50_drop=a.max_map50_drop,
                         int8_float_layers=a.int8_float_layers, metadata={"auto": None, "on": True, "off": False}[a.metadata])
    except (MaskODError, FileNotFoundError, FileExistsError) as e:
        return error_exit(e)
    except KeyboardInterrupt:  # the export's temporary folder is already removed; an earlier export is untouched
        print(f"stopped by Ctrl-C: nothing was written to {a.out_dir}")
        return 130
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the export is complete: a late Ctrl-C must not make it look failed
    print(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
