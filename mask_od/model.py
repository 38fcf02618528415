"""SSD MobileNet V2 FPNLite (and SSD ResNet50 V1 FPN) assembled from Model Garden's official.vision parts."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mask_od.config import Config

# Keras-applications backbones: the endpoints used as levels 3, 4, 5 and the input preprocessing they were trained with.
BACKBONE_SPECS = {
    "mobilenet_v2_fpnlite": (("block_6_expand_relu", "block_13_expand_relu", "out_relu"), "tf"),
    "resnet50_fpn": (("conv3_block4_out", "conv4_block6_out", "conv5_block3_out"), "caffe"),
}


@dataclasses.dataclass(frozen=True)
class AnchorSpec:
    """The anchors of the detector, one definition for the input parser (anchor labeling), the model (head size,
    detection generator) and the TFLite export: levels ``min_level``..``max_level`` (strides 8..128),
    ``num_scales`` sizes per octave, ``aspect_ratios``, and ``anchor_size`` (side / stride; the config key)."""

    anchor_size: float
    min_level: int = 3
    max_level: int = 7
    num_scales: int = 3
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)

    @classmethod
    def from_config(cls, config: Config) -> "AnchorSpec":
        from mask_od.config import parse_aspect_ratios

        return cls(anchor_size=config.anchor_size, aspect_ratios=parse_aspect_ratios(config.anchor_aspect_ratios))

    @property
    def per_location(self) -> int:
        return self.num_scales * len(self.aspect_ratios)

    def kwargs(self) -> dict:
        """The keyword arguments Model Garden's parser, RetinaNetModel and Anchor take."""
        return {"min_level": self.min_level, "max_level": self.max_level, "num_scales": self.num_scales,
                "aspect_ratios": list(self.aspect_ratios), "anchor_size": self.anchor_size}


def build_backbone(backbone: str, image_size: int, weights: Path | None = None, freeze_bn: bool = False):
    """A tf_keras Model: image normalized as Model Garden does (ImageNet mean/std) -> ``{'3','4','5'}`` features at
    strides 8, 16, 32, with ``output_specs`` for Model Garden's FPN. Keras-applications weights load by layer name."""
    import tensorflow as tf
    import tf_keras
    from official.vision.ops.preprocess_ops import MEAN_RGB, STDDEV_RGB

    endpoints, mode = BACKBONE_SPECS[backbone]
    shape = (image_size, image_size, 3)
    if backbone == "mobilenet_v2_fpnlite":
        base = tf_keras.applications.MobileNetV2(input_shape=shape, include_top=False, weights=None)
    else:
        base = tf_keras.applications.ResNet50(input_shape=shape, include_top=False, weights=None)
    if weights is not None:
        try:
            base.load_weights(str(weights))
        except Exception as e:  # noqa: BLE001 - h5py / keras raise many kinds
            from mask_od.weights import WeightsError

            raise WeightsError(f"{weights}: cannot load as {backbone} Keras-applications weights ({e})") from None
    for layer in base.layers:
        if isinstance(layer, tf_keras.layers.BatchNormalization):
            # Keras applications use momentum 0.999: moving statistics would lag the fine-tuned weights for thousands
            # of steps and inference would see other features than training (Model Garden uses 0.99 too).
            layer.momentum = 0.99
            if freeze_bn:
                layer.trainable = False
    features = tf_keras.Model(base.input, [base.get_layer(n).output for n in endpoints], name=f"{backbone}_features")
    inputs = tf_keras.Input(shape=shape, name="normalized_image")
    rgb = inputs * tf.constant(STDDEV_RGB) + tf.constant(MEAN_RGB)  # back to [0, 255]
    outs = features(_keras_applications_input(rgb, mode))
    model = tf_keras.Model(inputs, {str(level): o for level, o in zip((3, 4, 5), outs)}, name="backbone")
    model.output_specs = {k: v.shape for k, v in model.output.items()}
    return model


def _keras_applications_input(pixels, mode: str):
    """RGB pixels 0..255 -> what the Keras-applications network was trained on: ``tf`` mode [-1, 1], ``caffe`` mode
    BGR with the ImageNet mean subtracted."""
    import tensorflow as tf

    if mode == "tf":
        return pixels / 127.5 - 1.0
    return pixels[..., ::-1] - tf.constant([103.939, 116.779, 123.68])


def backbone_features_from_pixels(model, config: Config, pixels):
    """float32 RGB pixels ``[B, S, S, 3]`` in 0..255 -> ``{'3','4','5'}`` backbone features, equal to
    ``model.backbone(normalized image)`` but without its normalize -> de-normalize round trip. The result is the same
    in float; in a full-integer TFLite model each of those elementwise ops is requantized, which alone cost 15 mAP@0.5
    points at 320 (0.370 -> 0.224 on the face-mask val split)."""
    features = model.backbone.get_layer(f"{config.backbone}_features")
    x = _keras_applications_input(pixels, BACKBONE_SPECS[config.backbone][1])
    return {str(level): o for level, o in zip((3, 4, 5), features(x, training=False))}


def build_model(config: Config, num_classes: int, load_pretrained: bool = True, anchors: AnchorSpec | None = None):
    """The RetinaNet-style single-shot detector: backbone -> FPN (levels 3-7, 128 filters, separable convs for
    FPNLite) -> shared head (4 convs) -> multilevel detection generator. ``num_classes`` is the largest label-map id;
    the model predicts ``num_classes + 1`` logits (id 0 = background), so detection classes are label-map ids."""
    import tf_keras
    from official.vision.modeling.decoders.fpn import FPN
    from official.vision.modeling.heads.dense_prediction_heads import RetinaNetHead
    from official.vision.modeling.layers.detection_generator import MultilevelDetectionGenerator
    from official.vision.modeling.retinanet_model import RetinaNetModel

    from mask_od.shipped import is_packaged
    from mask_od.weights import resolve_pretrained

    anchors = anchors or AnchorSpec.from_config(config)
    lite = config.backbone == "mobilenet_v2_fpnlite"
    # a packaged detector (pretrained: face_mask) is loaded whole after the build (mask_od.transfer), not as a backbone
    backbone_file = load_pretrained and not is_packaged(config.pretrained)
    weights = resolve_pretrained(config.pretrained, config.backbone) if backbone_file else None
    reg = tf_keras.regularizers.l2(config.weight_decay) if config.weight_decay > 0 else None
    backbone = build_backbone(config.backbone, config.image_size, weights, config.freeze_backbone_bn)
    filters = 128 if lite else 256
    decoder = FPN(
        input_specs=backbone.output_specs,
        min_level=anchors.min_level,
        max_level=anchors.max_level,
        num_filters=filters,
        use_separable_conv=lite,
        use_keras_layer=True,  # UpSampling2D: one RESIZE_NEAREST_NEIGHBOR op XNNPACK runs, not RESHAPE+TILE outside it
        norm_momentum=0.97,
        kernel_regularizer=reg,
    )
    head = RetinaNetHead(
        min_level=anchors.min_level,
        max_level=anchors.max_level,
        num_classes=num_classes + 1,
        num_anchors_per_location=anchors.per_location,
        num_convs=4,
        num_filters=filters,
        use_separable_conv=lite,
        norm_momentum=0.97,
        kernel_regularizer=reg,
    )
    generator = MultilevelDetectionGenerator(
        apply_nms=True,
        pre_nms_top_k=1000,
        pre_nms_score_threshold=config.score_threshold,
        nms_iou_threshold=config.nms_iou_threshold,
        max_num_detections=config.max_detections,
        nms_version="v2",  # the TFLite export builds its own post-processing (export.make_tflite_function)
        use_class_agnostic_nms=config.class_agnostic_nms,
    )
    model = RetinaNetModel(
        backbone,
        decoder,
        head,
        generator,
        **anchors.kwargs(),
    )
    dummy = tf_keras.Input(shape=(config.image_size, config.image_size, 3))  # no fixed batch: any replica count divides it
    model(dummy, training=True)
    return model


def anchor_boxes(config: Config, anchors: AnchorSpec | None = None):
    """Model Garden's multilevel anchors (pixel yxyx) for the square input."""
    from official.vision.ops import anchor

    spec = anchors or AnchorSpec.from_config(config)
    return anchor.Anchor(**spec.kwargs(), image_size=(config.image_size, config.image_size)).multilevel_boxes


def warm_start_batch_norm(model, images) -> int:
    """Set the moving statistics of the FPN's and head's BatchNorm layers to those of one training batch.

    The head starts with tiny weights (stddev 0.01), so its activations have a variance near 0 while the moving
    variance starts at 1: for hundreds of steps inference would see activations shrunk many times and predict nothing
    but the prior. Returns the number of layers set. The backbone keeps its ImageNet statistics."""
    import tf_keras

    layers = [
        layer
        for part in (model.decoder, model.head)
        for layer in part.submodules
        if isinstance(layer, tf_keras.layers.BatchNormalization)
    ]
    saved = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = 0.0
    try:
        model(images, training=True)
    finally:
        for layer, m in zip(layers, saved):
            layer.momentum = m
    return len(layers)
