"""Non-public library calls live in mask_od/lite_internals.py alone, and each still exists as used; exported TFLite
files run in a generic TFLite SSD loop that reads outputs by position (TF1 order) or by signature name."""

import inspect
import re

import numpy as np
import pytest
from conftest import ROOT

PRIVATE = re.compile(r"_get_ops_details|mlir_quantize|_generate_detections_tflite|flatbuffer_utils|schema_py_generated"
                     r"|tensorflow\.lite\.python|tensorflow\.python\.|\._classifier\b")


def test_private_names_are_used_in_one_module_only():
    users = sorted(str(p.relative_to(ROOT)) for folder in ("mask_od", "scripts", "benchmarks") for p in (ROOT / folder).rglob("*.py")
                   if PRIVATE.search(p.read_text(encoding="utf-8")))
    assert users == ["mask_od/lite_internals.py"], users


def test_each_private_call_still_exists_as_used():
    """Fails naming the call when an upgrade of TensorFlow, LiteRT or Model Garden renames or changes it."""
    from ai_edge_litert.interpreter import Interpreter
    from official.vision.modeling.layers import detection_generator
    from tensorflow.lite.python import convert
    from tensorflow.lite.tools import flatbuffer_utils

    assert hasattr(detection_generator, "_generate_detections_tflite_implements_signature"), \
        "official.vision.modeling.layers.detection_generator._generate_detections_tflite_implements_signature is gone"
    params = inspect.signature(convert.mlir_quantize).parameters
    assert {"input_data_type", "output_data_type", "denylisted_nodes"} <= set(params), \
        f"tensorflow.lite.python.convert.mlir_quantize takes {list(params)}"
    assert callable(getattr(Interpreter, "_get_ops_details", None)), "ai_edge_litert Interpreter._get_ops_details is gone"
    from official.vision.modeling.heads.dense_prediction_heads import RetinaNetHead

    head = RetinaNetHead(min_level=3, max_level=4, num_classes=2, num_anchors_per_location=1)
    head.build({"3": [1, 8, 8, 16], "4": [1, 4, 4, 16]})
    assert hasattr(head, "_classifier"), "Model Garden RetinaNetHead._classifier (the class layer) is gone"
    for name in ("convert_bytearray_to_object", "convert_object_to_bytearray"):
        assert callable(getattr(flatbuffer_utils, name, None)), f"tensorflow.lite.tools.flatbuffer_utils.{name} is gone"


def generic_ssd_loop(path, rgb: np.ndarray, by_name: bool):
    """What Raspberry Pi / Android TFLite SSD examples do: letterbox, set the input, read outputs by position in TF1
    order (boxes, classes, scores, count), or by signature name; classes from 0."""
    from ai_edge_litert.interpreter import Interpreter

    from mask_od.detect import letterbox_rgb

    it = Interpreter(model_path=str(path), num_threads=2)
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    size = int(inp["shape"][1])
    x = letterbox_rgb(rgb, size)[0][None]
    if inp["dtype"] == np.uint8:
        x = np.clip(np.rint(x), 0, 255).astype(np.uint8)  # the int8 files take pixels 0..255 as they are
    if by_name:
        out = it.get_signature_runner()(image=x.astype(inp["dtype"]))
        return out["detection_boxes"][0], out["detection_classes"][0], out["detection_scores"][0], out["num_detections"][0]
    it.set_tensor(inp["index"], x.astype(inp["dtype"]))
    it.invoke()
    o = it.get_output_details()
    assert [d["index"] for d in o] == sorted(d["index"] for d in o)  # tensor indices ascend in that order too
    return tuple(it.get_tensor(o[i]["index"])[0] for i in range(4))


@pytest.mark.parametrize("variant", ["float32", "int8"])
def test_shipped_files_run_in_a_generic_tflite_loop(variant):
    """On a real photo: the same detections as Detector, by position and by name; the count is a whole number."""
    import cv2

    from mask_od.detect import Detector
    from mask_od.shipped import MODELS_DIR

    folder = MODELS_DIR / "face_mask"
    rgb = cv2.cvtColor(cv2.imread(str(sorted((folder / "examples").glob("*.jpg"))[0])), cv2.COLOR_BGR2RGB)
    det = Detector(folder / f"model_{variant}.tflite", score_threshold=0.0)
    ref = det.predict(rgb)
    assert len(ref) >= 3  # faces found on the photo
    for by_name in (False, True):
        boxes, classes, scores, count = generic_ssd_loop(folder / f"model_{variant}.tflite", rgb, by_name)
        assert boxes.shape[-1] == 4 and count == int(count) and int(count) == int((scores > 0).sum()), (by_name, count)
        n = int(count)
        assert n == len(ref)
        assert np.allclose(np.sort(scores[:n])[::-1], ref.scores, atol=1e-6)
        assert sorted(classes[:n].astype(int) + 1) == sorted(ref.classes.tolist())


def test_exported_files_name_and_order_their_outputs(exported):
    from ai_edge_litert.interpreter import Interpreter

    out, _, _ = exported
    for v in ("float32", "float16", "int8"):
        it = Interpreter(model_path=str(out / f"model_{v}.tflite"))
        assert it.get_signature_list()["serving_default"]["outputs"] == \
            ["detection_boxes", "detection_classes", "detection_scores", "num_detections"]
        o = it.get_output_details()
        assert [len(d["shape"]) for d in o] == [3, 2, 2, 1]  # boxes [1, M, 4], classes, scores [1, M], count [1]
        assert [d["index"] for d in o] == sorted(d["index"] for d in o)
