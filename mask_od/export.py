"""Export a trained run: SavedModel (TF OD API signature) and TFLite float32 / float16 / int8 with NMS inside,
each TFLite file checked against the SavedModel before the export directory is put in place."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from mask_od.config import Config

TFLITE_VARIANTS = ("float32", "float16", "int8")


class ExportError(RuntimeError):
    """The export cannot be made; the message says which file and why."""


def make_tflite_function(model, config: Config):
    """A concrete function ``float32 [1, S, S, 3]`` RGB pixels (0..255, letterboxed) -> TFLite_Detection_PostProcess
    outputs (boxes normalized to the S x S input, classes 0-based without background, scores, count). Built from the
    model's backbone, FPN and head with Model Garden's TFLite post-processing; the background logit is dropped first."""
    import tensorflow as tf
    from official.vision.modeling.layers.detection_generator import _generate_detections_tflite

    from mask_od.model import anchor_boxes, backbone_features_from_pixels, tflite_postprocess_config

    s = config.image_size
    anchors = anchor_boxes(config)
    post_cfg = tflite_postprocess_config(config)

    @tf.function(input_signature=[tf.TensorSpec([1, s, s, 3], tf.float32, name="image")])
    def detect(images):
        feats = model.decoder(backbone_features_from_pixels(model, config, images), training=False)
        raw_scores, raw_boxes, _ = model.head(feats, training=False)
        scores = {}
        for level, sc in raw_scores.items():
            h, w = sc.shape[1], sc.shape[2]
            a = raw_boxes[level].shape[-1] // 4
            c = sc.shape[-1] // a
            scores[level] = tf.reshape(tf.reshape(sc, [1, h, w, a, c])[..., 1:], [1, h, w, a * (c - 1)])
        boxes, classes, det_scores, num = _generate_detections_tflite(raw_boxes, scores, anchors, dict(post_cfg))
        return boxes, classes, det_scores, num

    return detect.get_concrete_function()


def _representative(images: Sequence[np.ndarray], size: int):
    from mask_od.detect import letterbox_rgb

    def gen():
        for img in images:
            yield [letterbox_rgb(img, size)[0][None]]

    return gen


def save_tflite_graph(concrete_fn, model, path: Path) -> Path:
    """Save the TFLite-bound function as a SavedModel (only the MLIR converter reading a SavedModel turns Model
    Garden's annotated post-processing into the TFLite_Detection_PostProcess op; not for TF inference)."""
    import tensorflow as tf

    module = tf.Module()
    module.model_variables = list(model.variables)  # not the Keras model: saving it would trace every layer
    tf.saved_model.save(module, str(path), signatures={"serving_default": concrete_fn})
    return path


def convert_tflite(graph_dir: Path, variant: str, calibration_images: Sequence[np.ndarray] = (), size: int = 320) -> bytes:
    """TFLite bytes for ``float32``, ``float16`` (weights) or ``int8`` (full integer, uint8 input, calibrated)."""
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_saved_model(str(graph_dir))
    conv.allow_custom_ops = True
    if variant == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif variant == "int8":
        if not len(calibration_images):
            raise ExportError("int8 export needs calibration images (training images)")
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = _representative(calibration_images, size)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.uint8
    elif variant != "float32":
        raise ExportError(f"unknown TFLite variant {variant!r}; choose from {TFLITE_VARIANTS}")
    return conv.convert()


def export_model(
    run_dir: Path | str,
    out_dir: Path | str,
    tflite: Sequence[str] = TFLITE_VARIANTS,
    check_records: str | None = None,
    calibration_records: str | None = None,
    num_check: int = 50,
    num_calibration: int = 100,
    which: str = "best",
    overwrite: bool = False,
    image_size: int | None = None,
) -> dict:
    """Export ``run_dir`` to ``out_dir``: ``saved_model/``, ``model_<variant>.tflite``, ``label_map.pbtxt``,
    ``config.yaml`` and ``export_report.json`` (agreement of each TFLite file with the SavedModel on ``check_records``
    and the mAP of each). ``image_size`` exports the weights at another input size than they were trained at.
    Everything is built in a temporary folder and renamed into place at the end, so a failure
    leaves no half-written export and an existing export is only replaced with ``overwrite``."""
    import tensorflow as tf

    from mask_od.data import resolve_records
    from mask_od.evaluate import examples_from_records
    from mask_od.inference import make_detection_module
    from mask_od.train import load_trained_model

    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise ExportError(f"{out_dir} already exists; refusing to overwrite an export (pass overwrite=True)")
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
        tmp.mkdir()
    except OSError as e:
        raise ExportError(f"{out_dir}: cannot write the export there ({e})") from None
    t0 = time.perf_counter()
    try:
        model, config, label_map = load_trained_model(run_dir, which, image_size)
        module = make_detection_module(model, config)
        tf.saved_model.save(module, str(tmp / "saved_model"), signatures={"serving_default": module.serve})
        shutil.copyfile(Path(run_dir) / "label_map.pbtxt", tmp / "label_map.pbtxt")
        config.save(tmp / "config.yaml")
        report: dict = {"run_dir": str(run_dir), "image_size": config.image_size, "variants": {}}
        calib = []
        if "int8" in tflite:
            recs = calibration_records or config.train_records
            calib = [img for img, *_ in examples_from_records(resolve_records(recs), num_calibration)]
        graph = save_tflite_graph(make_tflite_function(model, config), model, tmp / ".tflite_graph")
        for v in tflite:
            data = convert_tflite(graph, v, calib, config.image_size)
            (tmp / f"model_{v}.tflite").write_bytes(data)
            report["variants"][v] = {"file": f"model_{v}.tflite", "bytes": len(data)}
        check = check_records or config.val_records
        if check and tflite:
            report["check"] = check_tflite(tmp, check, label_map, tflite, num_check)
        report["seconds"] = round(time.perf_counter() - t0, 1)
        shutil.rmtree(graph, ignore_errors=True)
        (tmp / "export_report.json").write_text(json.dumps(report, indent=1))
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
            os.replace(out_dir, old)
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    report["out_dir"] = str(out_dir)
    return report


def check_tflite(export_dir: Path, records: str, label_map, variants: Sequence[str], limit: int = 50) -> dict:
    """Run the SavedModel and each TFLite file on ``limit`` images of ``records``: mAP of each, and agreement with the
    SavedModel (share of its detections with score >= 0.3 found by the TFLite model with the same class at IoU >= 0.5,
    and the largest score difference of those matches). Raises :class:`ExportError` for a file that finds none."""
    from mask_od.boxes import box_iou_yxyx
    from mask_od.detect import Detector
    from mask_od.evaluate import evaluate, examples_from_records

    examples = list(examples_from_records(records, limit))
    ref = Detector(export_dir / "saved_model", label_map=label_map, score_threshold=0.0)
    ref_preds = [ref.predict(img) for img, *_ in examples]
    out = {"images": len(examples), "saved_model": {"mAP50": evaluate(lambda im, it=iter(ref_preds): next(it), examples, label_map, progress=False)["mAP50"]}}
    for v in variants:
        det = Detector(export_dir / f"model_{v}.tflite", label_map=label_map, score_threshold=0.0)
        preds = [det.predict(img) for img, *_ in examples]
        m = evaluate(lambda im, it=iter(preds): next(it), examples, label_map, progress=False)
        found = total = 0
        max_diff = 0.0
        for r, p in zip(ref_preds, preds):
            keep = r["scores"] >= 0.3
            total += int(keep.sum())
            if not keep.any() or not len(p["scores"]):
                continue
            iou = box_iou_yxyx(r["boxes"][keep], p["boxes"])
            same = r["classes"][keep][:, None] == p["classes"][None, :]
            ok = (iou >= 0.5) & same
            found += int(ok.any(axis=1).sum())
            for i in np.where(ok.any(axis=1))[0]:
                j = int(np.argmax(np.where(ok[i], iou[i], -1)))
                max_diff = max(max_diff, abs(float(r["scores"][keep][i] - p["scores"][j])))
        agree = found / total if total else 1.0
        out[v] = {"mAP50": m["mAP50"], "mAP": m["mAP"], "agreement": agree, "reference_detections": total, "max_score_diff": max_diff}
        if total and found == 0:
            raise ExportError(f"model_{v}.tflite finds none of the SavedModel's {total} detections: the conversion is broken")
    return out
