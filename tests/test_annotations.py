import time

import numpy as np
import pytest
from conftest import tree_digest, write_jpeg, write_xml

from mask_od.annotations import (
    AnnotationError,
    annotations_to_dataframe,
    parse_voc_dir,
    parse_voc_xml,
    read_image_rgb,
    write_csv,
    write_voc_xml,
)


def test_parse_tolerates_missing_path_and_other_extension(tmp_path):
    write_jpeg(tmp_path / "a.jpg", 60, 80)
    xml = write_xml(tmp_path / "a.xml", "a.png", 80, 60, [("with_mask", 10, 10, 30, 40)])  # says .png, is .jpg
    ann = parse_voc_xml(xml)
    assert ann.image_path.name == "a.jpg" and ann.names == ["with_mask"]
    np.testing.assert_array_equal(ann.boxes_xyxy, [[10, 10, 30, 40]])
    assert (ann.width, ann.height) == (80, 60)


def test_box_a_few_pixels_past_edge_is_clipped_and_counted(tmp_path):
    write_jpeg(tmp_path / "a.jpg", 60, 80)
    xml = write_xml(tmp_path / "a.xml", "a.jpg", 80, 60, [("x", 70, 10, 83, 40), ("y", 1, 1, 5, 5)])
    ann = parse_voc_xml(xml)
    assert ann.clipped == 1
    assert ann.boxes_xyxy[0, 2] == 80


@pytest.mark.parametrize(
    "box, words",
    [((10, 10, 10, 40), "zero-area"), ((30, 10, 10, 40), "inverted"), ((10, 10, 200, 40), "outside")],
)
def test_bad_boxes_name_file_and_object(tmp_path, box, words):
    write_jpeg(tmp_path / "a.jpg", 60, 80)
    xml = write_xml(tmp_path / "a.xml", "a.jpg", 80, 60, [("ok", 1, 1, 5, 5), ("bad", *box)])
    before = tree_digest(tmp_path)
    with pytest.raises(AnnotationError) as e:
        parse_voc_xml(xml)
    assert str(xml) in str(e.value) and "object #1" in str(e.value) and words in str(e.value)
    assert tree_digest(tmp_path) == before


def test_missing_and_undecodable_image(tmp_path):
    xml = write_xml(tmp_path / "a.xml", "a.jpg", 80, 60, [("x", 1, 1, 5, 5)])
    with pytest.raises(AnnotationError, match="not found") as e:
        parse_voc_xml(xml)
    assert str(xml) in str(e.value)
    (tmp_path / "a.jpg").write_bytes(b"\xff\xd8\xff garbage, not a jpeg")
    before = tree_digest(tmp_path)
    with pytest.raises(AnnotationError, match="cannot decode") as e:
        parse_voc_xml(xml)
    assert "a.jpg" in str(e.value)
    assert tree_digest(tmp_path) == before


BOMB = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
<!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
<!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
<!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
<!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
<!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">]>
<annotation><filename>a.jpg</filename><object><name>&lol9;</name></object></annotation>"""

XXE = """<?xml version="1.0"?>
<!DOCTYPE a [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<annotation><filename>a.jpg</filename><object><name>&xxe;</name></object></annotation>"""


@pytest.mark.parametrize("text", [BOMB, XXE], ids=["billion-laughs", "external-entity"])
def test_entity_attacks_refused_fast(tmp_path, text):
    write_jpeg(tmp_path / "a.jpg")
    xml = tmp_path / "evil.xml"
    xml.write_text(text)
    t = time.perf_counter()
    with pytest.raises(AnnotationError, match="entities") as e:
        parse_voc_xml(xml)
    assert time.perf_counter() - t < 20.0  # refused before expansion (expanding would take minutes and gigabytes)
    assert "evil.xml" in str(e.value)
    assert "root:" not in str(e.value)  # /etc/passwd never read


def test_16bit_rgba_png_becomes_8bit_rgb(tmp_path):
    import cv2

    img16 = np.zeros((20, 30, 4), np.uint16)
    img16[..., 2] = 65535  # red in BGRA
    img16[..., 3] = 65535
    cv2.imwrite(str(tmp_path / "p.png"), img16)
    rgb = read_image_rgb(tmp_path / "p.png")
    assert rgb.dtype == np.uint8 and rgb.shape == (20, 30, 3)
    assert tuple(rgb[0, 0]) == (255, 0, 0)


def test_parse_dir_reports_every_bad_file(tmp_path):
    write_jpeg(tmp_path / "a.jpg")
    write_xml(tmp_path / "a.xml", "a.jpg", 80, 60, [("x", 5, 5, 5, 9)])
    write_xml(tmp_path / "b.xml", "nope.jpg", 80, 60, [("x", 1, 1, 5, 5)])
    with pytest.raises(AnnotationError) as e:
        parse_voc_dir(tmp_path)
    assert "2 of 2" in str(e.value) and "a.xml" in str(e.value) and "b.xml" in str(e.value)


def test_csv_and_voc_round_trip(tiny_voc, tmp_path):
    anns = parse_voc_dir(tiny_voc.xml_dir)
    df = annotations_to_dataframe(anns)
    assert list(df.columns) == ["filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax"]
    assert len(df) == sum(a.num_boxes for a in anns)
    csv = write_csv(anns, tmp_path / "labels.csv")
    assert csv.read_text().count("\n") == len(df) + 1
    out = tmp_path / "copy.xml"
    write_voc_xml(anns[0], out)
    back = parse_voc_xml(out, image_dir=tiny_voc.image_dir)
    assert back.names == anns[0].names
    np.testing.assert_array_equal(back.boxes_xyxy, anns[0].boxes_xyxy)
    with pytest.raises(FileExistsError):
        write_voc_xml(anns[0], out)
