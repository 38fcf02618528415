"""Labelling in the notebook: widget state -> LabelImg XML -> parse_voc_dir, pre-labels, bad input (the browser test
is in test_labeling_browser.py)."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import need_shared, write_jpeg
from lxml import etree

from mask_od.annotations import parse_voc_dir
from mask_od.detections import Detections
from mask_od.labeling import Labeler, LabelingError, objects_to_widget, prelabels, voc_xml_string, widget_to_objects

LM = {1: "with_mask", 2: "without_mask", 3: "mask_weared_incorrect"}


def test_widget_state_round_trips_through_voc_xml(tmp_path):
    write_jpeg(tmp_path / "a.jpg", h=60, w=80)
    lab = Labeler(tmp_path, LM)
    boxes = [{"x": 10.4, "y": 5.6, "width": 20.2, "height": 30.0, "label": "with_mask"},
             {"x": 70, "y": 40, "width": -15, "height": 30, "label": "mask_weared_incorrect"}]  # dragged up-left, past the edge
    path = lab.save(boxes)
    ann = parse_voc_dir(tmp_path)[0]
    assert path == tmp_path / "a.xml" and ann.names == ["with_mask", "mask_weared_incorrect"]
    np.testing.assert_array_equal(ann.boxes_xyxy, [[10, 6, 31, 36], [55, 40, 70, 60]])  # integers, clipped to 80x60
    assert lab.status() == "image 1 / 1: a.jpg | 1 / 1 labelled"
    again = Labeler(tmp_path, LM).state  # re-opening shows the saved boxes
    assert [b["label"] for b in again.boxes] == ["with_mask", "mask_weared_incorrect"]
    assert widget_to_objects(again.boxes, 80, 60, list(LM.values())) == [("with_mask", 10, 6, 31, 36), ("mask_weared_incorrect", 55, 40, 70, 60)]


def test_xml_matches_a_labelimg_file_field_by_field(tmp_path):
    """Re-save a shared LabelImg annotation through the widget boxes: every field the two formats share is equal."""
    src = need_shared("data", "face-mask", "annotations", "maksssksksss0.xml")
    img = need_shared("data", "face-mask", "images", "maksssksksss0.jpg")
    shutil.copy(img, tmp_path / img.name)
    theirs = etree.parse(str(src)).getroot()
    objects = [(o.findtext("name"), *(int(o.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax"))) for o in theirs.iter("object")]
    lab = Labeler(tmp_path, LM)
    lab.save(objects_to_widget(objects))
    ours = etree.parse(str(tmp_path / "maksssksksss0.xml")).getroot()
    assert [c.tag for c in ours] == ["folder", "filename", "path", "source", "size", "segmented"] + ["object"] * len(objects)
    for tag in ("filename", "size/width", "size/height", "size/depth", "segmented"):
        assert ours.findtext(tag) == theirs.findtext(tag), tag
    for a, b in zip(ours.iter("object"), theirs.iter("object"), strict=True):
        assert [c.tag for c in a] == ["name", "pose", "truncated", "difficult", "bndbox"]  # LabelImg 1.8.6's order
        for tag in ("name", "pose", "truncated", "difficult", "bndbox/xmin", "bndbox/ymin", "bndbox/xmax", "bndbox/ymax"):
            assert a.findtext(tag) == b.findtext(tag), tag
    assert "\t<size>\n\t\t<width>512</width>" in (tmp_path / "maksssksksss0.xml").read_text()  # tabs, as LabelImg


def test_labelimg_truncated_rule_and_escaping():
    xml = voc_xml_string(Path("/x/a&b.jpg"), 100, 50, 3, [("with_mask", 1, 10, 20, 30), ("with_mask", 10, 10, 20, 50), ("with_mask", 5, 5, 9, 9)])
    root = etree.fromstring(xml.encode())
    assert [o.findtext("truncated") for o in root.iter("object")] == ["1", "1", "0"]
    assert root.findtext("filename") == "a&b.jpg"


def test_prelabels_from_detector_output_are_clipped_and_named():
    det = Detections.from_arrays([[0.1, 0.2, 0.5, 0.6], [-0.1, 0.9, 0.3, 1.2], [0.0, 0.0, 0.1, 0.1]], [1, 3, 2], [0.9, 0.7, 0.2], LM)
    boxes = prelabels(det, width=200, height=100)
    assert [b["label"] for b in boxes] == ["with_mask", "mask_weared_incorrect"]  # the 0.2 one is below the live score
    assert [boxes[0][k] for k in ("x", "y", "width", "height")] == pytest.approx([40, 10, 80, 40])
    assert boxes[1]["x"] == pytest.approx(180) and boxes[1]["width"] == pytest.approx(20) and boxes[1]["y"] == 0.0


def test_new_images_open_with_the_detector_boxes(tmp_path):
    write_jpeg(tmp_path / "a.jpg", h=60, w=80)

    class FakeDetector:
        def predict(self, rgb):
            return Detections.from_arrays([[0.0, 0.0, 0.5, 0.5]], [2], [0.8], LM)

    lab = Labeler(tmp_path, LM, detector=FakeDetector())
    assert lab.state.boxes == [{"x": 0.0, "y": 0.0, "width": 40.0, "height": 30.0, "label": "without_mask"}]
    lab.save()
    assert parse_voc_dir(tmp_path)[0].names == ["without_mask"]


def test_bad_images_classes_and_xml_are_reported_and_nothing_is_overwritten(tmp_path):
    write_jpeg(tmp_path / "a.jpg")
    (tmp_path / "b.jpg").write_bytes(b"not a jpeg")
    write_jpeg(tmp_path / "c.jpg")
    (tmp_path / "c.xml").write_text("<annotation><object>")  # malformed
    lab = Labeler(tmp_path, LM)
    with pytest.raises(LabelingError, match="class 'mask' is not in the label map"):
        lab.save([{"x": 1, "y": 1, "width": 5, "height": 5, "label": "mask"}])
    assert not (tmp_path / "a.xml").exists()
    lab.next()
    assert lab.save() is None and "b.jpg: skipped" in lab.messages[-1] and "cannot decode" in lab.messages[-1]
    lab.next()
    assert lab.save() is None and "not overwritten" in lab.messages[-1]
    assert (tmp_path / "c.xml").read_text() == "<annotation><object>"
    assert (tmp_path / "b.jpg").read_bytes() == b"not a jpeg"
