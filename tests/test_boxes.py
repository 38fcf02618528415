import numpy as np
import pytest

from mask_od.boxes import box_iou_yxyx, norm_yxyx_to_voc_xyxy, voc_xyxy_to_norm_yxyx


def slow_iou(a, b):
    ih = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iw = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ih * iw
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def test_voc_to_norm_by_hand():
    out = voc_xyxy_to_norm_yxyx(np.array([[10, 20, 30, 60]]), width=100, height=200)
    np.testing.assert_allclose(out, [[0.1, 0.1, 0.3, 0.3]], rtol=1e-6)
    np.testing.assert_allclose(norm_yxyx_to_voc_xyxy(out, 100, 200), [[10, 20, 30, 60]], rtol=1e-5)


def test_iou_matches_slow_reference():
    rng = np.random.default_rng(0)
    p = rng.random((30, 2, 2))
    a = np.concatenate([p.min(1), p.max(1)], 1)[:, [0, 1, 2, 3]]
    q = rng.random((20, 2, 2))
    b = np.concatenate([q.min(1), q.max(1)], 1)
    fast = box_iou_yxyx(a, b)
    slow = np.array([[slow_iou(x, y) for y in b] for x in a])
    np.testing.assert_allclose(fast, slow, atol=1e-12)


def test_iou_edges():
    a = np.array([[0, 0, 1, 1]], float)
    assert box_iou_yxyx(a, a)[0, 0] == 1.0
    assert box_iou_yxyx(a, np.array([[1, 1, 2, 2]], float))[0, 0] == 0.0  # touching corners
    assert box_iou_yxyx(a, np.array([[0, 0.5, 1, 1.5]], float))[0, 0] == pytest.approx(1 / 3)


def test_bad_shape_raises():
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        box_iou_yxyx(np.zeros((3, 3)), np.zeros((1, 4)))
