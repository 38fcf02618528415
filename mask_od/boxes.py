"""Box conversions and IoU: VOC pixel xyxy at the parsing boundary, normalized yxyx (TF's order) inside."""

from __future__ import annotations

import numpy as np


def _check(boxes: np.ndarray, name: str) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name} must have shape [N, 4], got {boxes.shape}")
    return boxes


def voc_xyxy_to_norm_yxyx(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pixel ``[N, 4]`` (xmin, ymin, xmax, ymax) -> normalized float32 ``[N, 4]`` (ymin, xmin, ymax, xmax) in [0, 1]."""
    b = _check(boxes, "boxes")
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    out = np.stack([b[:, 1] / height, b[:, 0] / width, b[:, 3] / height, b[:, 2] / width], axis=1)
    return out.astype(np.float32)


def norm_yxyx_to_voc_xyxy(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Normalized ``[N, 4]`` (ymin, xmin, ymax, xmax) -> pixel float ``[N, 4]`` (xmin, ymin, xmax, ymax)."""
    b = _check(boxes, "boxes")
    return np.stack([b[:, 1] * width, b[:, 0] * height, b[:, 3] * width, b[:, 2] * height], axis=1)


def box_area_yxyx(boxes: np.ndarray) -> np.ndarray:
    """Area of ``[N, 4]`` yxyx boxes (any units); inverted boxes have area 0."""
    b = _check(boxes, "boxes")
    return np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)


def box_iou_yxyx(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of ``[N, 4]`` and ``[M, 4]`` yxyx boxes -> ``[N, M]`` in [0, 1] (0 where the union is empty)."""
    a, b = _check(a, "a"), _check(b, "b")
    ymin = np.maximum(a[:, None, 0], b[None, :, 0])
    xmin = np.maximum(a[:, None, 1], b[None, :, 1])
    ymax = np.minimum(a[:, None, 2], b[None, :, 2])
    xmax = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ymax - ymin, 0, None) * np.clip(xmax - xmin, 0, None)
    union = box_area_yxyx(a)[:, None] + box_area_yxyx(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
