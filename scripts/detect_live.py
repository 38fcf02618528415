"""Live mask detection from a camera, video file, image folder or stream, with FPS, counts, alerts and recordings.
python scripts/detect_live.py --source 0 [--size 640]   (the shipped face-mask model, int8, 320 px unless --size 640)
python scripts/detect_live.py --model workspace/exported-models/RUN/model_float32.tflite --source 0"""

import argparse
from pathlib import Path

from mask_od.runtime import quiet_tensorflow

quiet_tensorflow()  # TensorFlow's C++ logs quieted before it starts


def main(argv=None) -> int:
    from mask_od.cli import at_least, error_exit, fraction

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="exported saved_model/ folder or .tflite file (default: the shipped "
                   "face-mask model's int8 file at --size)")
    p.add_argument("--size", type=int, choices=[320, 640], default=None, help="input size of the shipped model (without "
                   "--model): 320 for webcam close-ups (fast), 640 for door, street and crowd cameras (small faces, ~4x the time; default 320)")
    p.add_argument("--source", default="0", help="camera index, video file, image folder, rtsp:// or http:// URL (default: camera 0)")
    p.add_argument("--score_threshold", type=fraction, default=0.5, help="detections drawn and counted: score at least this, "
                   "0-1 (default %(default)s)")
    p.add_argument("--max_detections", "--max_boxes", type=at_least(1), default=50, help="most detections drawn per frame "
                   "(default %(default)s)")
    p.add_argument("--num_threads", type=at_least(1), default=2, help="CPU threads of the TFLite interpreter (default %(default)s)")
    p.add_argument("--display", default="auto", choices=["auto", "window", "none"], help="auto: a window where there is a display, else none (Jupyter shows frames inline)")
    p.add_argument("--output_video", default=None, help="write the annotated video here (.mp4)")
    p.add_argument("--log_path", default=None, help="per-frame detections as JSON lines")
    p.add_argument("--alert_classes", nargs="*", default=None, help="classes that raise an alert, an ALERT: line "
                   "(default: without_mask, when the model has it; none: --alert_classes alone)")
    p.add_argument("--alert_cooldown_s", type=at_least(0.0, float), default=5.0, help="seconds between two alerts (default %(default)s)")
    p.add_argument("--max_frames", type=int, default=None, help="stop after this many frames (default: until the source ends)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output_video / --log_path")
    a = p.parse_args(argv)
    from mask_od.detect import Detector
    from mask_od.errors import MaskODError
    from mask_od.live import AlertHook, default_alert_classes, run_live
    from mask_od.shipped import live_model

    try:
        a.model, said = live_model(a.model, a.size)
        if said:
            print(said, flush=True)
        det = Detector(a.model, score_threshold=a.score_threshold, max_detections=a.max_detections, num_threads=a.num_threads)
        a.alert_classes = default_alert_classes(a.alert_classes, det.label_map, ("without_mask",))
        alert = AlertHook(classes=a.alert_classes, cooldown_s=a.alert_cooldown_s) if a.alert_classes else None
        s = run_live(det, a.source, a.display, a.output_video, a.log_path, alert, a.max_frames, overwrite=a.overwrite)
    except (MaskODError, FileExistsError, FileNotFoundError) as e:
        return error_exit(e)
    except KeyboardInterrupt:  # before the frame loop (which ends cleanly on Ctrl-C): nothing was written
        print("stopped by Ctrl-C before it started", flush=True)
        return 130
    print(s)
    for what, path in (("annotated video", a.output_video), ("per-frame log", a.log_path)):
        if path and Path(path).is_file():
            print(f"{what}: {Path(path).resolve()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
