"""Run inside the MediaPipe tool venv (mask_od.metadata builds it), never imported by mask_od: ``write`` puts TFLite
Metadata into object-detection files with MediaPipe's metadata writer; ``detect`` runs MediaPipe Tasks' ObjectDetector.

python mediapipe_tool.py write < {"files": [{"path", "labels", "mean", "std"}, ...]}   (JSON on stdin; files without
    metadata, rewritten in place: mask_od.metadata.write_metadata hands in temporary copies)
python mediapipe_tool.py detect MODEL.tflite IMAGE.npy [SCORE_THRESHOLD]   (uint8 RGB [H, W, 3])
Each prints one JSON line on stdout as its last line."""

import json
import sys


def write(spec: dict) -> dict:
    from mediapipe.tasks.python.metadata.metadata_writers import metadata_writer, object_detector

    done = []
    for f in spec["files"]:
        with open(f["path"], "rb") as fh:
            buf = bytearray(fh.read())
        writer = object_detector.MetadataWriter.create_for_models_with_nms(
            buf, f["mean"], f["std"], metadata_writer.Labels().add(list(f["labels"])))
        out, _ = writer.populate()
        with open(f["path"], "wb") as fh:
            fh.write(out)
        done.append({"path": f["path"], "bytes": len(out)})
    return {"written": done}


def detect(model: str, image: str, score_threshold: float = 0.0) -> dict:
    import mediapipe as mp
    import numpy as np
    from mediapipe.tasks.python import BaseOptions, vision

    rgb = np.ascontiguousarray(np.load(image))
    opts = vision.ObjectDetectorOptions(base_options=BaseOptions(model_asset_path=model),
                                        score_threshold=score_threshold, max_results=-1)
    with vision.ObjectDetector.create_from_options(opts) as det:
        res = det.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb))
    # one entry per category: MediaPipe merges detections with the same box (per-class NMS keeps one anchor's box
    # for several classes) into one detection with several categories
    dets = [{"name": c.category_name, "score": float(c.score),
             "xywh": [d.bounding_box.origin_x, d.bounding_box.origin_y, d.bounding_box.width, d.bounding_box.height]}
            for d in res.detections for c in d.categories]
    return {"detections": sorted(dets, key=lambda d: -d["score"]), "mediapipe": mp.__version__}


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    result = write(json.load(sys.stdin)) if cmd == "write" else detect(args[0], args[1], *map(float, args[2:]))
    print(json.dumps(result))
