"""The one module that calls names outside the public APIs of TensorFlow Lite, LiteRT and Model Garden, each where no
public API does the job; tests/test_lite_internals.py fails naming the call when an upgrade changes one."""

from __future__ import annotations

from typing import Sequence

DETECTION_OUTPUTS = ("detection_boxes", "detection_classes", "detection_scores", "num_detections")


def postprocess_implements_signature(post_cfg: dict) -> str:
    """The ``experimental_implements`` attribute string that makes the TFLite converter replace a function by the
    TFLite_Detection_PostProcess op (Model Garden builds it in a private helper, used by its own TFLite export)."""
    from official.vision.modeling.layers.detection_generator import _generate_detections_tflite_implements_signature

    return _generate_detections_tflite_implements_signature(post_cfg)


def quantize_calibrated(calibrated_model: bytes, denylisted_nodes: Sequence[str]) -> bytes:
    """int8 TFLite bytes of a calibrated model with a uint8 input and float outputs, the tensors ``denylisted_nodes``
    kept float. TFLite's public route, ``QuantizationDebugger.get_nondebug_quantized_model()``, calls the same
    quantizer but cannot ask for a uint8 input, which every int8 consumer of the TF OD API's files expects."""
    import tensorflow as tf
    from tensorflow.lite.python import convert as tflite_convert

    return tflite_convert.mlir_quantize(calibrated_model, input_data_type=tf.uint8, output_data_type=tf.float32,
                                        denylisted_nodes=list(denylisted_nodes))


def class_layer(model) -> list:
    """The variables of a Model Garden RetinaNet's class layer, the class head's last conv (shared by all levels):
    ``RetinaNetHead`` keeps it in an attribute with no public accessor."""
    return list(model.head._classifier.weights)


def ops_details(interpreter) -> list[dict]:
    """The operators of a TFLite interpreter's main subgraph in execution order (``op_name``, ``inputs``, ``outputs``
    tensor indices): LiteRT's interpreter only lists them through a private method."""
    return interpreter._get_ops_details()


def order_detection_outputs(model: bytes) -> bytes:
    """The TFLite file ``model`` with its four detection outputs (signature names :data:`DETECTION_OUTPUTS`) put in the
    layout of TFLite_Detection_PostProcess, which generic TFLite SSD code reads by position: the subgraph's outputs
    listed boxes, classes, scores, count, and their tensor indices ascending in that order (the converter numbers them
    as it likes). Only tensor numbers change (every reference is renumbered); no weight or op does. Written with
    TensorFlow's ``flatbuffer_utils`` tool module on the TFLite schema's object API."""
    from tensorflow.lite.tools import flatbuffer_utils

    m = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    sig = m.signatureDefs[0]
    by_name = {(t.name.decode() if isinstance(t.name, bytes) else t.name): t for t in sig.outputs}
    if set(by_name) != set(DETECTION_OUTPUTS):
        raise ValueError(f"expected signature outputs {DETECTION_OUTPUTS}, got {sorted(by_name)}")
    g = m.subgraphs[sig.subgraphIndex]
    old = [by_name[n].tensorIndex for n in DETECTION_OUTPUTS]
    new = sorted(old)
    remap = dict(zip(old, new))
    perm = list(range(len(g.tensors)))  # perm[new index] = old index
    for o, n in remap.items():
        perm[n] = o
    inverse = {o: n for n, o in enumerate(perm)}

    def renumber(ids):
        return None if ids is None else [inverse.get(int(i), int(i)) if int(i) >= 0 else int(i) for i in ids]

    g.tensors = [g.tensors[o] for o in perm]
    for op in g.operators:
        op.inputs, op.outputs, op.intermediates = renumber(op.inputs), renumber(op.outputs), renumber(op.intermediates)
    g.inputs = renumber(g.inputs)
    g.outputs = new
    for s in m.signatureDefs:
        if s.subgraphIndex == sig.subgraphIndex:
            for t in list(s.inputs or []) + list(s.outputs or []):
                t.tensorIndex = inverse.get(t.tensorIndex, t.tensorIndex)
    sig.outputs = [by_name[n] for n in DETECTION_OUTPUTS]
    return flatbuffer_utils.convert_object_to_bytearray(m)


def without_metadata(model: bytes, name: str = "TFLITE_METADATA") -> bytes:
    """The TFLite file ``model`` without its metadata entry ``name`` (the entry removed, its buffer emptied so other
    buffer numbers stay valid) and without the files a metadata writer packs after the flatbuffer (a zip holding
    ``labels.txt``; MediaPipe's writer refuses to pack one twice). ``model`` itself when it has no such entry. Written
    with TensorFlow's ``flatbuffer_utils`` tool module, as :func:`order_detection_outputs`."""
    from tensorflow.lite.tools import flatbuffer_utils

    m = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    old = [e for e in (m.metadata or []) if (e.name.decode() if isinstance(e.name, bytes) else e.name) == name]
    if not old:
        return model
    for e in old:
        m.buffers[e.buffer].data = None
    m.metadata = [e for e in m.metadata if e not in old] or None
    return bytes(flatbuffer_utils.convert_object_to_bytearray(m))
