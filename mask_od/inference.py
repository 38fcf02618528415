"""The detector as a tf.Module with the TF OD API serving contract; used by evaluation, export and detection alike."""

from __future__ import annotations

from mask_od.config import Config

OUTPUT_KEYS = ("detection_boxes", "detection_classes", "detection_scores", "num_detections")


def make_detection_module(model, config: Config):
    """A ``tf.Module`` whose ``serve(images)`` takes uint8 ``[1, H, W, 3]`` RGB of any size and returns
    ``detection_boxes`` ``[1, N, 4]`` normalized (ymin, xmin, ymax, xmax) in the original image,
    ``detection_classes`` ``[1, N]`` label-map ids (float32, as the OD API), ``detection_scores`` ``[1, N]`` and
    ``num_detections`` ``[1]``. Letterboxing and normalization are the same as in training."""
    import tensorflow as tf
    from official.vision.ops import preprocess_ops

    size = config.image_size

    class DetectionModule(tf.Module):
        def __init__(self):
            super().__init__(name="mask_od_detector")
            # Only the variables are tracked: saving the Keras model itself would trace every layer (minutes).
            self.model_variables = list(model.variables)

        @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.uint8, name="input_tensor")])
        def serve(self, images):
            image = tf.cast(images[0], tf.float32)  # [0, 255]: normalize with the 0..255 ImageNet mean and std
            image = preprocess_ops.normalize_image(image, offset=preprocess_ops.MEAN_RGB, scale=preprocess_ops.STDDEV_RGB)
            image, info = preprocess_ops.resize_and_crop_image(
                image, [size, size], padded_size=[size, size], aug_scale_min=1.0, aug_scale_max=1.0
            )
            image.set_shape([size, size, 3])
            # no image_shape: boxes are not clipped before NMS, as in the TFLite files (their post-processing op
            # cannot clip); both clip to the image after NMS, so a file and its SavedModel keep the same boxes
            out = model(image[None], training=False)
            orig, scale = info[0], info[2]
            boxes = out["detection_boxes"][0] / tf.concat([scale, scale], 0)
            boxes = boxes / tf.concat([orig, orig], 0)
            boxes = tf.clip_by_value(boxes, 0.0, 1.0)
            return {
                "detection_boxes": boxes[None],
                "detection_classes": tf.cast(out["detection_classes"], tf.float32),
                "detection_scores": out["detection_scores"],
                "num_detections": tf.cast(out["num_detections"], tf.float32),
            }

    return DetectionModule()


def detections_from_outputs(outputs, label_map=None):
    """The first image of a serving output as :class:`~mask_od.detections.Detections`, cut to ``num_detections``."""
    import numpy as np

    from mask_od.detections import Detections

    n = int(np.asarray(outputs["num_detections"]).reshape(-1)[0])
    return Detections.from_arrays(np.asarray(outputs["detection_boxes"])[0, :n], np.asarray(outputs["detection_classes"])[0, :n],
                                  np.asarray(outputs["detection_scores"])[0, :n], label_map)
