"""Package a trained run as a model folder (like models/face_mask): checkpoint (model variables only), TFLite float32
and int8, label map, config, manifest.json with sha256 sums and a model card.
python scripts/package_model.py workspace/models/my_ssd_mobilenet_v2_fpnlite workspace/packaged/my_model [--card card.md]
  [--image_size 320 640 --size_run 320=workspace/models/my_320_finetune]"""

import argparse
from pathlib import Path

from mask_od.runtime import quiet_tensorflow

quiet_tensorflow()  # TensorFlow's C++ logs quieted before it starts


def size_run(text: str) -> tuple[int, str]:
    """``SIZE=RUN_DIR`` -> (size, run directory)."""
    size, sep, run = text.partition("=")
    if not sep or not size.isdigit() or not run:
        raise argparse.ArgumentTypeError(f"{text!r}: expected SIZE=RUN_DIR, e.g. 320=workspace/models/run_320")
    return int(size), run


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("run_dir", help="run directory (what training leaves)")
    p.add_argument("out_dir", help="the model folder to write")
    p.add_argument("--image_size", type=int, nargs="+", default=[320],
                   help="input size(s) of the TFLite files, e.g. 320 640 (the first: model_{float32,int8}.tflite, others: model_SIZE_*.tflite)")
    p.add_argument("--size_run", type=size_run, action="append", default=[], metavar="SIZE=RUN_DIR",
                   help="the TFLite files at SIZE come from this run (e.g. a short fine-tune at that size started from "
                   "run_dir; same label map, backbone and anchors); checkpoint, config and label map stay run_dir's. Repeatable")
    p.add_argument("--which", default="best", choices=["best", "latest"], help="best: best/ (else the moving average "
                   "averaged/, else the latest checkpoint); latest: the raw weights of the latest checkpoint")
    p.add_argument("--no_tflite", action="store_true", help="checkpoint only")
    p.add_argument("--check_records", default=None, help="records to check the TFLite files on (default: the run's val_records)")
    p.add_argument("--num_check", type=int, default=50)
    p.add_argument("--card", default=None, help="markdown file: the model card's text (data, figures, weaknesses)")
    p.add_argument("--examples", nargs="*", default=[], help="images copied into examples/ (the notebook's try-it photos)")
    p.add_argument("--update_card", action="store_true", help="only rewrite out_dir/README.md from --card (no sums change)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier packaged model there")
    a = p.parse_args(argv)
    sizes = [size for size, _ in a.size_run]
    if len(set(sizes)) < len(sizes):
        p.error(f"--size_run names size {max(sizes, key=sizes.count)} twice: give one run per size")
    from mask_od.cli import error_exit
    from mask_od.errors import MaskODError
    from mask_od.package import package_model, update_card

    try:
        card = Path(a.card).read_text(encoding="utf-8") if a.card else f"# {Path(a.out_dir).name}\n"
        if a.update_card:
            update_card(a.out_dir, card)
            return 0
        package_model(a.run_dir, a.out_dir, tflite=not a.no_tflite, image_size=a.image_size, check_records=a.check_records,
                      num_check=a.num_check, card=card, examples=tuple(a.examples), overwrite=a.overwrite, which=a.which,
                      size_runs=dict(a.size_run))
    except (MaskODError, FileExistsError, OSError) as e:
        return error_exit(e)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
