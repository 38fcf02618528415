"""Export a trained run: SavedModel (TF OD API signature) and TFLite float32 / float16 / int8 with NMS inside,
each TFLite file checked against the SavedModel before the export directory is put in place."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from itertools import islice
from typing import Iterable, Iterator, Sequence

import numpy as np

from mask_od.config import Config
from mask_od.detections import ALL
from mask_od.errors import MaskODError
from mask_od.fileio import refuse_existing, refuse_outputs_on_inputs, remove_path, replace_path, temp_sibling
from mask_od.lite_internals import DETECTION_OUTPUTS, ops_details, order_detection_outputs, postprocess_implements_signature, quantize_calibrated
from mask_od.metadata import MetadataError, export_metadata
from mask_od.parity import MAX_MAP50_DROP, MIN_BOOTSTRAP_IMAGES, counted
from mask_od.runtime import SigintScope

TFLITE_VARIANTS = ("float32", "float16", "int8")
INT8_FLOAT_LAYERS = 5  # int8: layers with the largest quantization error kept in float (0 = every layer int8)
# int8 calibration images (training photos, read as needed): the face-mask model at 640, same weights, mAP@0.5 of the
# int8 file minus its SavedModel's on 137 val photos: 100 images -2.4 points, 300 -1.2, 546 -0.7
NUM_CALIBRATION = 500


class ExportError(MaskODError, RuntimeError):
    """The export cannot be made; the message says which file and why."""


def tflite_postprocess_config(config: Config) -> dict:
    """Settings of TFLite's TFLite_Detection_PostProcess op: fast class-agnostic NMS, or regular per-class NMS when
    ``class_agnostic_nms`` is off (as the SavedModel does; :func:`make_tflite_function` then runs one op per class);
    anchors normalized to the input."""
    return {
        "max_detections": config.max_detections,
        "max_classes_per_detection": 1,
        "use_regular_nms": not config.class_agnostic_nms,
        "detections_per_class": config.max_detections,
        "nms_score_threshold": config.score_threshold,
        "nms_iou_threshold": config.nms_iou_threshold,
        "normalize_anchor_coordinates": True,
        "input_image_size": (config.image_size, config.image_size),
    }


def make_tflite_function(model, config: Config):
    """A concrete function ``float32 [1, S, S, 3]`` RGB pixels (0..255, letterboxed) -> ``detection_boxes``
    ``[1, M, 4]`` normalized yxyx in the S x S input, ``detection_classes`` ``[1, M]`` 0-based without background,
    ``detection_scores`` ``[1, M]``, ``num_detections`` ``[1]`` (a whole number), the layout of
    TFLite_Detection_PostProcess. Built from the model's backbone, FPN and head; the background logit is
    dropped first. Per-class NMS (``class_agnostic_nms: false``) runs one post-processing op per class (see
    :func:`_per_class_postprocess`); class-agnostic NMS is one op with TFLite's fast NMS."""
    import tensorflow as tf

    from mask_od.model import anchor_boxes, backbone_features_from_pixels

    s = config.image_size
    anchors = _center_size_anchors(anchor_boxes(config), s)
    post_cfg = tflite_postprocess_config(config)

    @tf.function(input_signature=[tf.TensorSpec([1, s, s, 3], tf.float32, name="image")])
    def detect(images):
        feats = model.decoder(backbone_features_from_pixels(model, config, images), training=False)
        raw_scores, raw_boxes, _ = model.head(feats, training=False)
        scores, boxes = [], []
        for level in sorted(raw_scores, key=int):
            a = raw_boxes[level].shape[-1] // 4
            c = raw_scores[level].shape[-1] // a
            scores.append(tf.reshape(raw_scores[level], [1, -1, c])[..., 1:])  # anchors x classes, background dropped
            boxes.append(tf.reshape(raw_boxes[level], [1, -1, 4]))
        scores = tf.sigmoid(tf.concat(scores, 1))
        boxes = tf.concat(boxes, 1)
        post = _per_class_postprocess if post_cfg["use_regular_nms"] else _postprocess_op
        return dict(zip(DETECTION_OUTPUTS, post(boxes, scores, anchors, post_cfg)))

    return detect.get_concrete_function()


def _center_size_anchors(multilevel_anchors, size: int):
    """Model Garden's pixel yxyx anchors of all levels -> ``[N, 4]`` (ycenter, xcenter, h, w) normalized to the
    input, the anchor layout TFLite_Detection_PostProcess takes."""
    import tensorflow as tf

    a = tf.concat([tf.reshape(multilevel_anchors[k], [-1, 4]) for k in sorted(multilevel_anchors, key=int)], 0)
    a = tf.stack([(a[:, 0] + a[:, 2]) / 2, (a[:, 1] + a[:, 3]) / 2, a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]], axis=-1)
    return a / float(size)


def _postprocess_op(boxes, scores, anchors, post_cfg: dict):
    """One TFLite_Detection_PostProcess op over box encodings ``[1, N, 4]``, class probabilities ``[1, N, K]`` and
    anchors ``[N, 4]``: a composite function that the MLIR converter replaces by the op, with the attributes of
    Model Garden's implements signature. In TensorFlow it returns zeros of the op's output shapes (export only)."""
    import tensorflow as tf

    cfg = dict(post_cfg, num_classes=int(scores.shape[-1]))
    m = cfg["max_detections"] * cfg["max_classes_per_detection"]

    @tf.function(experimental_implements=postprocess_implements_signature(cfg))
    def post_processing(input_boxes, input_scores, input_anchors):  # noqa: ARG001 - replaced by the TFLite op
        return (tf.zeros([1, m, 4], name="boxes"), tf.zeros([1, m], name="classes"),
                tf.zeros([1, m], name="scores"), tf.zeros([1], name="num_detections"))

    return post_processing(boxes, scores, anchors)


def _per_class_postprocess(boxes, scores, anchors, post_cfg: dict):
    """Per-class NMS as the SavedModel does it, safe on any number of threads: one single-class
    TFLite_Detection_PostProcess op per class, merged by score (top ``max_detections``).

    Why not one op with ``use_regular_nms``: its multi-threaded path (TFLite 2.20 / LiteRT 2.3 kernel, any
    ``num_threads`` from 2 to K-1) starts its shared column counter at ``num_threads`` and advances it with a
    pre-increment, so class column ``num_threads`` is never processed: with 3 classes and 2 threads the last class
    never leaves the op (found by forcing each class's logit high in a random model; 1 thread outputs it). A
    one-column op has no column to skip, and the outputs match the SavedModel's per-class NMS box for box (neither
    clips boxes before NMS: see :func:`mask_od.inference.make_detection_module`)."""
    import tensorflow as tf

    k = int(scores.shape[-1])
    m = post_cfg["max_detections"]
    # one class: the fast NMS is that class's NMS, capped at max_detections like the SavedModel's per-class NMS (the
    # regular one caps each class at detections_per_class, which the converter drops: the kernel's default 100 applies)
    one = dict(post_cfg, use_regular_nms=False, max_classes_per_detection=1)
    outs = [_postprocess_op(boxes, scores[..., c : c + 1], anchors, one) for c in range(k)]
    all_boxes = tf.concat([o[0] for o in outs], 1)  # [1, K*M, 4]
    # rows past an op's count are not guaranteed to be zero (the fast-NMS kernel leaves scores there): mask them
    # (integer row numbers and counts: nothing here for the int8 converter to quantize)
    rows = tf.range(m)[None]
    all_scores = tf.concat([tf.where(rows < tf.cast(o[3], tf.int32)[:, None], o[2], tf.zeros_like(o[2])) for o in outs], 1)
    top_scores, idx = tf.math.top_k(all_scores, k=m, sorted=True)
    top_boxes = tf.gather(all_boxes, idx, batch_dims=1)
    top_classes = tf.cast(idx // m, tf.float32)
    # counted in integers: a float sum is quantized in the int8 file (43.92 for 44 detections)
    count = tf.cast(tf.reduce_sum(tf.cast(top_scores > 0.0, tf.int32), axis=1), tf.float32)
    return top_boxes, top_classes, top_scores, count


def _representative(images: Iterable[np.ndarray], size: int):
    from mask_od.detect import letterbox_rgb

    def gen():
        for img in images:
            yield [letterbox_rgb(img, size)[0][None]]

    return gen


class RecordImages:
    """The first ``limit`` images of TFRecords (uint8 ``[H, W, 3]``), decoded afresh on each pass and held one at a
    time: int8 calibration reads hundreds of photos of any size twice (the quantization debugger, then the
    converter) without holding them all in memory. ``count``: images yielded by the last complete pass."""

    def __init__(self, records: Sequence[str], limit: int):
        self.records, self.limit, self.count = list(records), int(limit), 0

    def __iter__(self) -> Iterator[np.ndarray]:
        from mask_od.evaluate import examples_from_records

        n = 0
        for img, *_ in examples_from_records(self.records, self.limit):
            n += 1
            yield img
        self.count = n


def save_tflite_graph(concrete_fn, model, path: Path) -> Path:
    """Save the TFLite-bound function as a SavedModel (only the MLIR converter reading a SavedModel turns Model
    Garden's annotated post-processing into the TFLite_Detection_PostProcess op; not for TF inference)."""
    import tensorflow as tf

    module = tf.Module()
    module.model_variables = list(model.variables)  # not the Keras model: saving it would trace every layer
    tf.saved_model.save(module, str(path), signatures={"serving_default": concrete_fn})
    return path


def convert_tflite(graph_dir: Path, variant: str, calibration_images: Iterable[np.ndarray] = (), size: int = 320,
                   int8_float_layers: int = INT8_FLOAT_LAYERS, kept_float: list | None = None) -> bytes:
    """TFLite bytes for ``float32``, ``float16`` (weights) or ``int8`` (integer, uint8 input, calibrated; the
    ``int8_float_layers`` layers with the largest quantization error stay float, their names appended to
    ``kept_float``: see :func:`_selective_int8`). Its outputs are named ``detection_boxes``, ``detection_classes``,
    ``detection_scores``, ``num_detections`` and come in that order by position and tensor index
    (:func:`mask_od.lite_internals.order_detection_outputs`), as TFLite SSD code reads them."""
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_saved_model(str(graph_dir))
    conv.allow_custom_ops = True
    if variant == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif variant == "int8":
        if next(iter(calibration_images), None) is None:  # a list or a re-iterable such as RecordImages
            raise ExportError("int8 export needs calibration images (training images)")
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = _representative(calibration_images, size)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.uint8
        if int8_float_layers > 0:
            data, names = _selective_int8(conv, list(islice(calibration_images, 16)), size, int8_float_layers)
            if kept_float is not None:
                kept_float.extend(names)
            return order_detection_outputs(data)
    elif variant != "float32":
        raise ExportError(f"unknown TFLite variant {variant!r}; choose from {TFLITE_VARIANTS}")
    return order_detection_outputs(conv.convert())


def _selective_int8(conv, debug_images: Sequence[np.ndarray], size: int, n: int) -> tuple[bytes, list[str]]:
    """int8 with the ``n`` layers whose int8 output strays most from their float output kept in float (selective
    quantization with TFLite's QuantizationDebugger, ranked by RMSE / quantization scale on ``debug_images``).

    Why: on the face-mask model at 640 the full-integer file scored 1.9 points of mAP@0.5 below the SavedModel on 137
    validation photos (0.629 vs 0.648). The worst layers are the first high-resolution ones of the backbone; with the
    5 worst in float it scored 0.653 (second run's weights, merge float too: 0.660 against 0.662; full integer
    0.663). Latency at 640, 2 threads, interleaved: +17% over full integer on the first (54.1 vs 46.4 ms), +1% on the
    second (46.6 vs 46.0), float32 67.9 ms. The merge after the NMS ops stays float too (:func:`_after_postprocess`).
    The quantizer is the one the debugger itself calls, given the uint8 input that ``inference_input_type`` asks of
    the plain converter."""
    import csv
    import io

    import tensorflow as tf

    debugger = tf.lite.experimental.QuantizationDebugger(converter=conv, debug_dataset=_representative(debug_images, size))
    with np.errstate(over="ignore"):  # a layer whose error overflows float32 gets inf and ranks first, as it should;
        debugger.run()                 # numpy's RuntimeWarnings about it (a dozen lines) say nothing more
    buf = io.StringIO()
    debugger.layer_statistics_dump(buf)
    buf.seek(0)
    error = {}
    for row in csv.DictReader(buf):
        scale = float(row["scale"] or 0)
        if scale > 0:
            error[row["tensor_name"]] = float(row["mean_squared_error"]) ** 0.5 / scale
    worst = sorted(error, key=error.get, reverse=True)[:n]
    data = quantize_calibrated(debugger.calibrated_model, worst + _after_postprocess(debugger.calibrated_model))
    return data, worst


def _after_postprocess(model: bytes) -> list[str]:
    """Names of the tensors computed after the first TFLite_Detection_PostProcess op (the per-class merge): kept
    float, else the quantizer rounds the final boxes and scores to 8 bits (on the face-mask model at 640 that cost
    1.8 points of COCO mAP, mostly box placement)."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=model)
    names = {t["index"]: t["name"] for t in it.get_tensor_details()}
    ops = ops_details(it)
    first = min((o["index"] for o in ops if o["op_name"] == "TFLite_Detection_PostProcess"), default=len(ops))
    return sorted({names[i] for o in ops[first:] if o["op_name"] != "TFLite_Detection_PostProcess"
                   for i in o["outputs"] if i in names})


def export_model(
    run_dir: Path | str,
    out_dir: Path | str,
    tflite: Sequence[str] = TFLITE_VARIANTS,
    check_records: str | None = None,
    calibration_records: str | None = None,
    num_check: int = 50,
    num_calibration: int = NUM_CALIBRATION,
    which: str = "best",
    overwrite: bool = False,
    image_size: int | None = None,
    max_map50_drop: float = MAX_MAP50_DROP,
    int8_float_layers: int = INT8_FLOAT_LAYERS,
    metadata: bool | None = None,
) -> dict:
    """Export ``run_dir`` to ``out_dir``: ``saved_model/``, ``model_<variant>.tflite``, ``label_map.pbtxt``,
    ``config.yaml`` and ``export_report.json`` (agreement of each TFLite file with the SavedModel on ``check_records``
    and the mAP of each; :func:`check_tflite` fails the export when a file does not decide like the SavedModel; without
    check images the report and a printed warning say the check was skipped).
    The int8 file is calibrated on the first ``num_calibration`` images of ``calibration_records`` (default the
    run's train_records; the count used is in the report). ``image_size`` exports the weights at another input size than they were trained at; ``int8_float_layers``
    layers of the int8 file stay float (:func:`_selective_int8`; 0: every layer int8). ``metadata``: TFLite Metadata
    for MediaPipe Tasks and other metadata readers (:func:`mask_od.metadata.export_metadata`: None writes it when
    MediaPipe's tool venv is built and says why not otherwise, True builds that venv when missing, False skips it;
    the report's ``metadata`` says which). Everything is built in a
    temporary folder and renamed into place at the end, so a failure leaves no half-written export; with
    ``overwrite`` only an earlier export (a folder holding ``export_report.json``) is replaced, never a run
    directory, a folder inside it or a folder that holds it (:func:`check_out_dir`)."""
    import tensorflow as tf

    from mask_od.config import image_size_problem
    from mask_od.inference import make_detection_module
    from mask_od.input_pipeline import RecordsError, require_examples, resolve_records
    from mask_od.runs import load_trained_model, require_run_dir

    out_dir = Path(out_dir)
    require_run_dir(run_dir)
    if "int8" in tflite and num_calibration < 1:
        raise ExportError(f"num_calibration must be at least 1 for the int8 file, got {num_calibration}")
    if image_size is not None and (why := image_size_problem(image_size)):
        raise ExportError(why)
    if num_check < 1:
        raise ExportError(f"num_check must be at least 1 (the images each TFLite file is checked on), got {num_check}")
    if not 0.0 <= max_map50_drop <= 1.0:
        raise ExportError(f"max_map50_drop is a fraction of mAP@0.5 between 0 and 1 (0.01 = 1 point), got {max_map50_drop}")
    check_out_dir(run_dir, out_dir, overwrite)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_sibling(out_dir)
        tmp.mkdir()
    except OSError as e:
        raise ExportError(f"{out_dir}: cannot write the export there ({e})") from None
    t0 = time.perf_counter()
    ctrl_c = _CtrlC().__enter__()
    try:
        model, config, label_map = load_trained_model(run_dir, which, image_size)
        check = check_records or config.val_records
        for what, recs in (("check records", check if tflite else ""),
                           ("calibration records", (calibration_records or config.train_records) if "int8" in tflite else "")):
            if recs:
                try:  # there, holding examples, and not written over
                    refuse_outputs_on_inputs({"--out_dir": out_dir}, [(what, f) for f in require_examples(recs)])
                except (FileNotFoundError, RecordsError) as e:  # before minutes of conversion, not after
                    raise ExportError(f"{what}: {e}; pass --check_records / --calibration_records") from None
        check_records_match(check if tflite else "", label_map, Path(run_dir) / "label_map.pbtxt")
        module = make_detection_module(model, config)
        tf.saved_model.save(module, str(tmp / "saved_model"), signatures={"serving_default": module.serve})
        shutil.copyfile(Path(run_dir) / "label_map.pbtxt", tmp / "label_map.pbtxt")
        config.save(tmp / "config.yaml")
        ctrl_c.check()
        report: dict = {"run_dir": str(run_dir), "image_size": config.image_size, "variants": {}}
        calib: Iterable[np.ndarray] = []
        if "int8" in tflite:
            calib = RecordImages(resolve_records(calibration_records or config.train_records), num_calibration)
        graph = save_tflite_graph(make_tflite_function(model, config), model, tmp / ".tflite_graph")
        for v in tflite:
            kept_float: list[str] = []
            data = convert_tflite(graph, v, calib, config.image_size, int8_float_layers, kept_float)
            ctrl_c.check()
            (tmp / f"model_{v}.tflite").write_bytes(data)
            report["variants"][v] = {"file": f"model_{v}.tflite", "bytes": len(data)}
            if v == "int8":
                report["variants"][v]["float_layers"] = kept_float
                report["variants"][v]["calibration_images"] = calib.count
        try:
            report["metadata"] = export_metadata(tmp, [f"model_{v}.tflite" for v in tflite], label_map, metadata)
        except MetadataError as e:
            raise ExportError(f"TFLite Metadata: {e}") from None
        for v in tflite:  # the files as written, metadata included
            report["variants"][v]["bytes"] = (tmp / f"model_{v}.tflite").stat().st_size
        ctrl_c.check()
        if check and tflite:
            report["check"] = check_tflite(tmp, check, label_map, tflite, num_check, max_map50_drop, shown_as=out_dir,
                                           int8=report["variants"].get("int8"))
        elif tflite:
            why = (f"not checked against the SavedModel: {run_dir} has no val_records and no check_records were given "
                   "(pass --check_records); the TFLite files may not decide like the SavedModel")
            print(f"warning: {why}", flush=True)
            report["check"] = {"skipped": why}
        report["seconds"] = round(time.perf_counter() - t0, 1)
        shutil.rmtree(graph, ignore_errors=True)
        (tmp / "export_report.json").write_text(json.dumps(report, indent=1))
        ctrl_c.check()
        replace_path(tmp, out_dir)  # an earlier export is swapped out only now that the new one is complete
    finally:
        ctrl_c.__exit__()
        remove_path(tmp)
    report["out_dir"] = str(out_dir)
    return report


class _CtrlC(SigintScope):
    """While exporting: Ctrl-C raises KeyboardInterrupt at once, as Python's own handler does, except inside a
    finalizer (``__del__``), where Python prints such an exception and drops it: a Ctrl-C during TFLite conversion
    landed there and the export went on to the end, rc 0 (seen in the test suite). There it is only remembered, and
    :meth:`check`, called between the export's steps, raises it."""

    def _handle(self, frame) -> None:
        while frame is not None:
            if frame.f_code.co_name == "__del__":
                return
            frame = frame.f_back
        raise KeyboardInterrupt

    def check(self) -> None:
        if self.seen:
            raise KeyboardInterrupt


def check_out_dir(run_dir: Path | str, out_dir: Path | str, overwrite: bool) -> None:
    """Refuse an export folder that would destroy work: the run itself, a folder inside it or above it, anything
    that exists without ``overwrite``, and with it anything but an earlier export (no ``export_report.json``)."""
    run, out = Path(run_dir).resolve(), Path(out_dir).resolve()
    if out == run or run in out.parents or out in run.parents:
        raise ExportError(f"{out_dir}: the export folder must lie outside the run directory {run_dir} and must not "
                          "contain it (the export would replace checkpoints); choose e.g. workspace/exported-models/NAME")
    if not out.exists():
        return
    try:
        refuse_existing(out_dir, overwrite)
    except FileExistsError as e:
        raise ExportError(str(e)) from None
    if not out.is_dir() or not (out / "export_report.json").is_file():
        raise ExportError(f"{out_dir} exists and is not an export made by mask_od (no export_report.json): refusing to "
                          "replace it even with --overwrite; choose an empty or new folder")


def check_records_match(records: str, label_map: dict, label_map_path: Path) -> None:
    """The check records were written with the run's label map (ids and class texts agree), before any conversion:
    :class:`~mask_od.label_map.LabelMapError` naming both otherwise. No records: nothing to check."""
    from mask_od.input_pipeline import check_record_labels

    if records:
        check_record_labels(records, label_map, f"the run's label map {label_map_path}")


def check_tflite(export_dir: Path, records: str, label_map, variants: Sequence[str], limit: int = 50,
                 max_map50_drop: float = MAX_MAP50_DROP, progress: bool = True, shown_as: Path | str | None = None,
                 int8: dict | None = None) -> dict:
    """Run the SavedModel and each TFLite file on ``limit`` images of ``records`` and compare what they decide
    (:func:`mask_od.parity.compare`: detections found by both, score and box agreement, classes output, a paired
    bootstrap interval of the mAP@0.5 difference), with COCO mAP@0.5 (all and per class) of each for the report.
    Raises :class:`ExportError` naming the file (in ``shown_as``, the folder the export will have, if given) and the
    files that passed when :func:`parity_failures` finds any (``int8``: the int8 file's ``calibration_images`` and
    ``float_layers``, named in the hint); prints one line per file, and a warning (also in the figures, ``warning``)
    when the SavedModel shows no detection to compare on these images."""
    from mask_od.detect import Detector
    from mask_od.evaluate import evaluate, examples_from_records
    from mask_od.parity import compare

    examples = list(examples_from_records(records, limit))
    gt = [(b, c) for _, b, c, _ in examples]
    sizes = [img.shape[:2] for img, *_ in examples]

    def score(preds) -> dict:
        m = evaluate(lambda im, it=iter(preds): next(it), examples, label_map, progress=False)
        return {"mAP50": m["mAP50"], "mAP": m["mAP"], "AP50_per_class": {k: v["AP50"] for k, v in m["per_class"].items()}}

    ref = Detector(export_dir / "saved_model", label_map=label_map, score_threshold=ALL)
    ref_preds = [ref.predict(img) for img, *_ in examples]
    out = {"records": str(records), "images": len(examples), "max_map50_drop": max_map50_drop, "saved_model": score(ref_preds)}
    for v in variants:
        det = Detector(export_dir / f"model_{v}.tflite", label_map=label_map, score_threshold=ALL)
        preds = [det.predict(img) for img, *_ in examples]
        out[v] = score(preds) | compare(ref_preds, preds, gt, sizes, label_map)
        if progress:
            print(parity_line(f"model_{v}.tflite", out[v]), flush=True)
    if variants and not out[variants[0]]["ref_shown"]:
        out["warning"] = (f"the SavedModel shows no detection scoring >= {out[variants[0]]['min_score']} on "
                          f"{counted(len(examples), 'check image')}: the TFLite files were compared on nothing (a model trained "
                          "too little, or check records of other photos)")
        print(f"warning: {out['warning']}", flush=True)
    failures = {v: parity_failures(out, [v]) for v in variants}
    problems = [f for v in variants for f in failures[v]]
    if problems:
        refused = [v for v in variants if failures[v]]
        fit = [v for v in variants if not failures[v]]
        hint = (f"; export only {' '.join(fit)} (tflite / --tflite) to deploy those" if fit else "")
        if "int8" in refused:
            now = (f" than the {int8['calibration_images']} used" if int8 and int8.get("calibration_images") else "")
            kept = (f" than the {len(int8['float_layers'])} now" if int8 and int8.get("float_layers") is not None else "")
            hint += (f"; for int8, more calibration images{now} (num_calibration; training photos like the ones it will "
                     f"see, calibration_records) or more layers kept float{kept} (int8_float_layers) may help")
        raise ExportError(f"{shown_as or export_dir}: TFLite files do not decide like the SavedModel on {counted(len(examples), 'image')} of "
                          f"{records}: " + "; ".join(problems) + hint)
    return out


def parity_line(name: str, c: dict) -> str:
    """One printed line of a file's agreement with the SavedModel (:func:`mask_od.parity.compare`'s figures)."""
    agree = f"{c['found']} of {c['ref_shown']} SavedModel detections found" if c["ref_shown"] else "no SavedModel detection to find"
    scores = f", scores {round(c['score_shift'], 3) + 0.0:+.3f} (median)" if c["pairs"] else ""
    drop, lo, hi = (None if x is None else f"{round(100 * x, 1) + 0.0:+.1f}"  # never "-0.0"
                    for x in (c["map50_drop"], *c["map50_drop_ci95"]))
    interval = f"95% interval {lo} to {hi}" if lo is not None else f"no interval on fewer than {MIN_BOOTSTRAP_IMAGES} images"
    return f"checked {name} on {counted(c['images'], 'image')}: {agree}{scores}, mAP@0.5 drop {drop} points ({interval})"


def parity_failures(check: dict, variants: Sequence[str]) -> list[str]:
    """What makes each TFLite file of :func:`check_tflite`'s figures unfit to deploy (:func:`mask_od.parity.parity_failures`
    at the check's ``max_map50_drop``). An empty list means every file passes."""
    from mask_od.parity import parity_failures as failures

    return [f for v in variants for f in failures(check[v], f"model_{v}.tflite", check["max_map50_drop"])]
