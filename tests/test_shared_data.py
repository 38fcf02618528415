"""The real dataset and its edge cases, from ../shared (skipped with a reason when absent)."""

import collections

import numpy as np
from conftest import need_shared

from mask_od.annotations import parse_voc_dir, parse_voc_xml
from mask_od.label_map import DEFAULT_CLASSES, validate_names


def test_all_683_face_mask_files_parse_with_known_counts(shared_face_mask):
    anns = parse_voc_dir(shared_face_mask / "annotations", shared_face_mask / "images")
    assert len(anns) == 683
    counts = collections.Counter(n for a in anns for n in a.names)
    assert counts == {"with_mask": 2605, "without_mask": 556, "mask_weared_incorrect": 99}
    validate_names({a.xml_path: a.names for a in anns}, dict(enumerate(DEFAULT_CLASSES, 1)))


def test_edge_cases_as_shipped():
    d = need_shared("data", "edge-cases")
    a1 = parse_voc_xml(d / "maksssksksss1.xml")  # 16-bit RGBA PNG
    assert a1.image_path.suffix == ".png" and (a1.width, a1.height) == (400, 156)
    a5 = parse_voc_xml(d / "maksssksksss5.xml")  # a box with xmax = width + 1
    assert a5.clipped == 1 and a5.boxes_xyxy[:, 2].max() == a5.width
    from mask_od.annotations import read_image_rgb

    img = read_image_rgb(a1.image_path)
    assert img.dtype == np.uint8 and img.shape == (156, 400, 3) and img.max() > 0
