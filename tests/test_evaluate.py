"""Metrics on cases whose answer is known by hand."""

import numpy as np
import pytest

from mask_od.detections import Detections
from mask_od.evaluate import Sample, coco_metrics, confusion_matrix, evaluate, f1_curves, match_detections

LM = {1: "with_mask", 2: "without_mask"}


def sample(i, gt, gc, boxes, classes, scores):
    det = Detections(np.array(boxes, np.float32).reshape(-1, 4), np.array(classes, np.int64), np.array(scores, np.float32))
    return Sample(i, 100, 100, np.array(gt, np.float32).reshape(-1, 4), np.array(gc), det)


GT = [[0.1, 0.1, 0.5, 0.5], [0.5, 0.5, 0.9, 0.9]]


def test_perfect_detections_give_one():
    s = [sample(1, GT, [1, 2], GT, [1, 2], [0.9, 0.8])]
    m = coco_metrics(s, LM)
    assert m["mAP"] == pytest.approx(1.0) and m["mAP50"] == pytest.approx(1.0)
    assert m["per_class"]["with_mask"]["AP"] == pytest.approx(1.0)


def test_shifted_box_scores_by_its_iou():
    # 40x40 box shifted by 10 px right: IoU = 30*40 / (2*1600 - 1200) = 0.6 -> counts at IoU .5 and .55 only
    gt = [[0.1, 0.1, 0.5, 0.5]]
    det = [[0.1, 0.2, 0.5, 0.6]]
    s = [sample(1, gt, [1], det, [1], [0.9])]
    m = coco_metrics(s, {1: "with_mask"})
    assert m["mAP50"] == pytest.approx(1.0)
    assert m["mAP75"] == pytest.approx(0.0)
    assert m["mAP"] == pytest.approx(2 / 10)  # thresholds .50 and .55 of ten
    s2 = [sample(1, gt, [1], [[0.1, 0.25, 0.5, 0.65]], [1], [0.9])]  # IoU = 25/55 < .5
    assert coco_metrics(s2, {1: "with_mask"})["mAP50"] == pytest.approx(0.0)


def test_wrong_class_is_a_miss_and_shows_in_confusion_matrix():
    s = [sample(1, GT, [1, 2], GT, [2, 2], [0.9, 0.8])]
    m = coco_metrics(s, LM)
    assert m["per_class"]["with_mask"]["AP50"] == pytest.approx(0.0)
    # without_mask: the higher-scored detection (0.9, on the with_mask face) is false, then the true one:
    # precision 1/2 at recall 1, so AP = 0.5 (interpolated precision is 0.5 everywhere)
    assert m["per_class"]["without_mask"]["AP50"] == pytest.approx(0.5)
    cm = confusion_matrix(s, LM)
    assert cm.tolist() == [[0, 1, 0], [0, 1, 0], [0, 0, 0]]


def test_confusion_background_row_and_column():
    s = [sample(1, GT, [1, 2], [[0.1, 0.1, 0.5, 0.5], [0.0, 0.0, 0.05, 0.05]], [1, 1], [0.9, 0.7])]
    cm = confusion_matrix(s, LM, score_threshold=0.25)
    # gt 1 matched as 1; gt 2 missed (background column); the stray detection is a false positive (background row)
    assert cm.tolist() == [[1, 0, 0], [0, 0, 1], [1, 0, 0]]


def test_match_is_greedy_by_score_and_single_use():
    s = sample(1, [[0.1, 0.1, 0.5, 0.5]], [1], [[0.1, 0.1, 0.5, 0.5], [0.1, 0.1, 0.5, 0.52]], [1, 1], [0.6, 0.9])
    assert match_detections(s).tolist() == [False, True]


def test_f1_curve_by_hand():
    # one true positive at 0.9, one false positive at 0.4, two ground truths of the class
    s = [sample(1, GT, [1, 1], [[0.1, 0.1, 0.5, 0.5], [0.0, 0.0, 0.05, 0.05]], [1, 1], [0.9, 0.4])]
    c = f1_curves(s, {1: "with_mask"})["classes"]["with_mask"]
    thr = np.linspace(0, 1, 101)
    i_low, i_mid = 10, 50  # 0.10: both kept; 0.50: only the true positive
    assert thr[i_mid] == pytest.approx(0.5)
    assert c["precision"][i_low] == pytest.approx(0.5) and c["recall"][i_low] == pytest.approx(0.5)
    assert c["precision"][i_mid] == pytest.approx(1.0) and c["f1"][i_mid] == pytest.approx(2 * 0.5 / 1.5)


def test_evaluate_writes_metrics_and_plots(tmp_path):
    img = np.zeros((100, 100, 3), np.uint8)
    examples = [(img, np.array(GT, np.float32), np.array([1, 2]), "a.jpg")]
    pred = {"boxes": np.array(GT, np.float32), "classes": np.array([1, 2]), "scores": np.array([0.9, 0.8], np.float32)}
    m = evaluate(lambda im: pred, examples, LM, out_dir=tmp_path, progress=False)
    assert m["mAP"] == pytest.approx(1.0)
    assert (tmp_path / "metrics.json").is_file()
    for name in ("pr_curve", "f1_curve", "confusion_matrix", "predictions"):
        assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG"


def test_a_voc_folder_is_checked_whole_before_any_image_is_scored(tiny_voc):
    """evaluate.py --xml_dir: every bad XML file is named in one error, raised when the examples are asked for (before
    the model runs), not the first one when iteration reaches it; a good folder gives ``limit`` examples."""
    import xml.etree.ElementTree as ET

    from mask_od.annotations import AnnotationError
    from mask_od.evaluate import examples_from_voc
    from mask_od.label_map import read_label_map

    lm = read_label_map(tiny_voc.label_map_path)
    got = list(examples_from_voc(tiny_voc.xml_dir, lm, limit=5))
    assert len(got) == 5 and got[0][0].shape == (128, 128, 3) and got[0][1].shape == (len(got[0][2]), 4)
    xmls = sorted(tiny_voc.xml_dir.glob("*.xml"))
    for f in (xmls[-1], xmls[-3]):  # the last files: iteration would reach them last
        tree = ET.parse(f)
        tree.find("object/bndbox/xmax").text = "-5"
        tree.write(f)
    with pytest.raises(AnnotationError) as e:
        examples_from_voc(tiny_voc.xml_dir, lm)  # no iteration
    assert f"2 of {len(xmls)} annotation files are unusable" in str(e.value)
    assert xmls[-1].name in str(e.value) and xmls[-3].name in str(e.value)
    assert len(list(examples_from_voc(tiny_voc.xml_dir, lm, limit=len(xmls) - 3))) == len(xmls) - 3  # files past limit unread
