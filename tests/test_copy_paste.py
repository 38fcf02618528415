"""benchmarks/copy_paste_faces.py (the copy-paste lever of the face-mask recipe): a pasted face lands where its box
says, at the photo's face scale, touching no other box; faces come from other photos of the list, only of the weaker
classes; the record keeps every original box and the source photos stay as they were."""

import sys
from pathlib import Path

import numpy as np
from conftest import ROOT, tree_digest, write_xml

sys.path.insert(0, str(ROOT / "benchmarks"))


def _colour_box(img: np.ndarray, rgb) -> np.ndarray:
    """xyxy (pixel edges) of the pixels within 40 of colour ``rgb``."""
    ys, xs = np.nonzero(np.abs(img.astype(int) - rgb).max(-1) < 40)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], float)


def test_a_pasted_face_lands_in_its_box_at_the_photos_face_scale():
    from copy_paste_faces import paste_faces

    from mask_od.annotations import Annotation

    red, green = (230, 20, 20), (20, 200, 20)
    crops = []
    for side, inner in ((30, (3, 3, 27, 27)), (44, (4, 6, 36, 40)), (16, (1, 2, 15, 14))):  # a rare face: red, green margin
        c = np.full((side if side != 44 else 46, side, 3), green, np.uint8)
        c[inner[1]:inner[3], inner[0]:inner[2]] = red
        crops.append((1, "mask_weared_incorrect", c, np.array(inner, float)))
    face_h = 40.0
    target = Annotation(Path("a.xml"), Path("a.jpg"), 300, 200, ["with_mask"], np.array([[20, 20, 50, 20 + face_h]], np.float32), [0], [0])
    rng = np.random.default_rng(0)
    placed = 0
    for _ in range(40):
        img, names, boxes = paste_faces(target, np.full((200, 300, 3), 128, np.uint8), crops, 1, rng)
        assert names[0] == "with_mask" and np.array_equal(boxes[0], target.boxes_xyxy[0])
        if len(names) == 1:
            continue
        placed += 1
        (x0, y0, x1, y1), = boxes[1:]
        assert names[1] == "mask_weared_incorrect"
        assert 0.8 * face_h - 1 <= y1 - y0 <= 1.25 * face_h + 1, (y1 - y0)  # scaled to the photo's median face (x0.8-1.25)
        np.testing.assert_allclose(_colour_box(img, red), boxes[1], atol=1.5)  # the box is where the face's pixels are
        assert min(x1, 50) <= max(x0, 20) or min(y1, 60) <= max(y0, 20)  # not on the photo's own face
    assert placed >= 10  # about half the draws ask for without_mask, which this bank lacks


def test_the_record_keeps_every_box_and_pastes_only_faces_of_other_photos(tmp_path):
    import cv2
    import tensorflow as tf
    from copy_paste_faces import PASTE, write_copy_paste_record

    from mask_od.annotations import decode_image_rgb
    from mask_od.label_map import write_label_map

    colours = {"a": (230, 20, 20), "b": (20, 20, 230), "c": (20, 200, 20)}  # each photo's without_mask face
    xmls = []
    for k, (stem, rgb) in enumerate(colours.items()):
        img = np.full((160, 240, 3), 128, np.uint8)
        img[20:60, 30:62] = rgb
        img[90:130, 150:182] = (250, 250, 250)  # a with_mask face
        cv2.imwrite(str(tmp_path / f"{stem}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        xmls.append(write_xml(tmp_path / f"{stem}.xml", f"{stem}.png", 240, 160,
                              [("without_mask", 30, 20, 62, 60), ("with_mask", 150, 90, 182, 130)]))
    (tmp_path / "train.txt").write_text("\n".join(map(str, xmls)) + "\n")
    write_label_map({1: "with_mask", 2: "without_mask", 3: "mask_weared_incorrect"}, tmp_path / "label_map.pbtxt")
    before = tree_digest(tmp_path)
    out = tmp_path / "out" / "paste.record"
    counts = write_copy_paste_record(tmp_path / "train.txt", tmp_path / "label_map.pbtxt", out, copies=3, seed=0)
    assert counts["photos"] == 9 and counts["without_mask"] > 0 and counts["mask_weared_incorrect"] == 0
    after = tree_digest(tmp_path)
    assert {k: after.get(k) for k in before} == before  # photos, labels and lists unchanged
    assert sorted(p.name for p in out.parent.iterdir()) == ["paste.record"]  # no temporary file left
    pasted = 0
    for raw in tf.data.TFRecordDataset(str(out)):
        f = tf.train.Example.FromString(raw.numpy()).features.feature
        stem = f["image/filename"].bytes_list.value[0].decode().split("_", 1)[1][0]
        img = decode_image_rgb(f["image/encoded"].bytes_list.value[0])
        yx = np.stack([f[f"image/object/bbox/{k}"].float_list.value for k in ("ymin", "xmin", "ymax", "xmax")], 1) * [160, 240, 160, 240]
        text = [t.decode() for t in f["image/object/class/text"].bytes_list.value]
        assert text[:2] == ["without_mask", "with_mask"] and set(text[2:]) <= set(PASTE)
        np.testing.assert_allclose(yx[:2], [[20, 30, 60, 62], [90, 150, 130, 182]], atol=1e-3)  # the originals kept
        for y0, x0, y1, x1 in yx[2:]:
            pasted += 1
            mean = img[int(y0) + 2:int(y1) - 2, int(x0) + 2:int(x1) - 2].reshape(-1, 3).mean(0)
            src = min(colours, key=lambda s: np.abs(mean - colours[s]).sum())
            assert np.abs(mean - colours[src]).max() < 30 and src != stem  # another photo's face, never its own
    assert pasted == counts["without_mask"] > 0
