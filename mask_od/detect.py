"""Detector: an exported SavedModel or TFLite file (chosen by path) -> detections of an image, and drawing them."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from mask_od.detections import LIVE, Detections
from mask_od.errors import MaskODError
from mask_od.label_map import read_label_map
from mask_od.plots import draw_boxes_rgb


def letterbox_rgb(image: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    """Resize uint8 RGB ``[H, W, 3]`` so its long side is ``size`` (aspect kept) and pad bottom/right with the ImageNet
    mean colour (what zero padding after normalization means in training). Returns (float32 ``[size, size, 3]``, scale)."""
    import cv2

    h, w = image.shape[:2]
    scale = min(size / h, size / w)
    nh, nw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    canvas = np.empty((size, size, 3), np.float32)
    canvas[:] = (0.485 * 255, 0.456 * 255, 0.406 * 255)
    canvas[:nh, :nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return canvas, scale


class ModelError(MaskODError, FileNotFoundError):
    """The model path is missing, not an exported model, or cannot be loaded; the message says which and why."""


def resolve_model_path(path: Path | str) -> Path:
    """An exported model: a ``.tflite`` file or a SavedModel folder; an export folder (``saved_model/`` inside) is
    taken as its SavedModel. Raises :class:`ModelError` naming what was found instead."""
    p = Path(path)
    if not p.exists():
        raise ModelError(f"{p}: no exported model here (make one with scripts/export.py)")
    if p.is_dir():
        if (p / "saved_model.pb").is_file():
            return p
        if (p / "saved_model" / "saved_model.pb").is_file():
            return p / "saved_model"
        from mask_od.runs import is_run_dir

        if is_run_dir(p):
            raise ModelError(f"{p}: a training run, not an exported model; export it first (python scripts/export.py "
                             f"--run_dir {p} --out_dir OUT) and pass OUT/model_int8.tflite or OUT/saved_model")
        tfl = sorted(f.name for f in p.glob("*.tflite"))
        raise ModelError(f"{p}: a folder without saved_model.pb; pass an export's saved_model/ folder or a .tflite file"
                         + (f" (it holds {', '.join(tfl)}; an int8 file runs fastest)" if tfl else ""))
    if p.suffix != ".tflite":
        raise ModelError(f"{p}: not a .tflite file or a SavedModel folder")
    return p


class Detector:
    """Loads ``saved_model/`` (a folder) or ``*.tflite`` (a file). The label map is taken from ``label_map`` or found
    beside the model. ``predict(rgb)`` returns :class:`Detections` at or above ``score_threshold`` (the live view's
    :data:`~mask_od.detections.LIVE` by default), at most ``max_detections``."""

    def __init__(self, path: Path | str, label_map: Mapping[int, str] | Path | str | None = None,
                 score_threshold: float = LIVE, max_detections: int = 100, num_threads: int = 2):
        self.path = resolve_model_path(path)
        if label_map is None:
            cand = [self.path / "label_map.pbtxt", self.path.parent / "label_map.pbtxt"]
            found = next((c for c in cand if c.is_file()), None)
            if found is None:
                raise ModelError(f"{self.path}: no label_map.pbtxt beside the model: copy the label_map.pbtxt "
                                 "it was trained with (its export folder has one) next to it, or pass label_map= in Python")
            label_map = found
        self.label_map = read_label_map(label_map) if isinstance(label_map, (str, Path)) else dict(label_map)
        self.score_threshold, self.max_detections = score_threshold, max_detections
        self.kind = "tflite" if self.path.suffix == ".tflite" else "saved_model"
        if self.kind == "tflite":
            from ai_edge_litert.interpreter import Interpreter

            from mask_od.shipped import verify_model_file

            verify_model_file(self.path)  # a file of a packaged model (models/face_mask) must match its sha256

            try:
                self._interp = Interpreter(model_path=str(self.path), num_threads=num_threads)
                self._interp.allocate_tensors()
            except (ValueError, RuntimeError) as e:
                raise ModelError(f"{self.path}: not a loadable TFLite model ({str(e).splitlines()[0][:200]})") from None
            self._in = self._interp.get_input_details()[0]
            self._out = _detection_output_indices(self._interp)
            self.input_size = int(self._in["shape"][1])
        else:
            import tensorflow as tf

            try:  # only possible before TensorFlow has started; otherwise it keeps its own setting
                tf.config.threading.set_inter_op_parallelism_threads(num_threads)
                tf.config.threading.set_intra_op_parallelism_threads(num_threads)
            except RuntimeError:
                pass
            try:
                self._fn = tf.saved_model.load(str(self.path)).signatures["serving_default"]
            except (OSError, ValueError, KeyError, tf.errors.OpError) as e:
                raise ModelError(f"{self.path}: not a loadable SavedModel with a serving_default signature "
                                 f"({str(e).splitlines()[0][:200]})") from None
            self.input_size = None

    def _tflite_input(self, rgb: np.ndarray) -> tuple[np.ndarray, float]:
        """The letterboxed ``[1, S, S, 3]`` input in the model's dtype (quantized for an integer input), and the scale."""
        canvas, scale = letterbox_rgb(rgb, self.input_size)
        x = canvas[None]
        if self._in["dtype"] != np.float32:
            sc, zp = self._in["quantization"]
            x = np.clip(np.round(x / (sc or 1.0) + zp), np.iinfo(self._in["dtype"]).min, np.iinfo(self._in["dtype"]).max)
        return x.astype(self._in["dtype"]), scale

    def model_only(self, rgb: np.ndarray, size: int = 320) -> Callable[[], None]:
        """A callable that runs only the model on ``rgb`` prepared once (letterboxed to the TFLite input, or to
        ``size`` for a SavedModel): no resizing, copying of results or drawing. For timing the model alone."""
        if self.kind == "tflite":
            x, _ = self._tflite_input(rgb)
            self._interp.set_tensor(self._in["index"], x)
            return self._interp.invoke
        import tensorflow as tf

        square = tf.constant(np.ascontiguousarray(letterbox_rgb(rgb, size)[0].astype(np.uint8))[None])
        return lambda: self._fn(input_tensor=square)

    def _predict_tflite(self, rgb: np.ndarray) -> Detections:
        size = self.input_size
        x, scale = self._tflite_input(rgb)
        self._interp.set_tensor(self._in["index"], x)
        self._interp.invoke()
        boxes, classes, scores, count = (self._interp.get_tensor(i) for i in self._out)
        boxes, classes, scores, n = boxes[0], classes[0], scores[0], int(np.rint(count[0]))  # older int8 files: 43.92 for 44
        h, w = rgb.shape[:2]
        f = np.array([size / (scale * h), size / (scale * w)] * 2, np.float32)
        boxes = np.clip(boxes[:n] * f, 0, 1)
        return Detections.from_arrays(boxes, classes[:n].astype(np.int64) + 1, scores[:n], self.label_map)

    def predict(self, rgb: np.ndarray) -> Detections:
        """Detections of uint8 RGB ``[H, W, 3]``, best first: at or above ``score_threshold``, at most
        ``max_detections``, with the class names of the label map."""
        rgb = np.asarray(rgb)
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected a uint8 [H, W, 3] RGB image, got {rgb.dtype} {rgb.shape}")
        if self.kind == "tflite":
            det = self._predict_tflite(rgb)
        else:
            from mask_od.inference import detections_from_outputs

            det = detections_from_outputs(self._fn(input_tensor=rgb[None]), self.label_map)
        return det.above(self.score_threshold, self.max_detections)


def _detection_output_indices(interp) -> list[int]:
    """Tensor indices of boxes, classes, scores and count: by signature name (``detection_boxes`` ...), or in files
    exported before the outputs were named, by the function's output number (``StatefulPartitionedCall:0..3``)."""
    from mask_od.lite_internals import DETECTION_OUTPUTS

    sigs = interp.get_signature_list()
    if sigs and set(DETECTION_OUTPUTS) <= set(next(iter(sigs.values()))["outputs"]):
        outputs = interp.get_signature_runner(next(iter(sigs))).get_output_details()
        return [int(outputs[n]["index"]) for n in DETECTION_OUTPUTS]
    outs = sorted(interp.get_output_details(), key=lambda d: int(d["name"].rsplit(":", 1)[-1]) if ":" in d["name"] else 0)
    return [int(o["index"]) for o in outs]


def draw_detections(rgb: np.ndarray, det: Detections) -> np.ndarray:
    """A copy of the RGB image with boxes in class colours and 'name score' labels, sized to the frame."""
    return draw_boxes_rgb(rgb, det.boxes, det.classes, det.names, det.scores)
