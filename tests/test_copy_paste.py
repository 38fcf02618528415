"""benchmarks/copy_paste_faces.py (the copy-paste lever of the face-mask recipe): pasted faces land where their boxes
say, at the photo's face scale, touch no other box, come from the weaker classes, and the source photos stay as they were."""

import sys

import numpy as np
from conftest import ROOT, tree_digest

sys.path.insert(0, str(ROOT / "benchmarks"))


def test_pasted_faces_are_labelled_where_they_land_and_sources_stay(tmp_path):
    import tensorflow as tf
    from copy_paste_faces import PASTE, write_copy_paste_record

    from mask_od.annotations import decode_image_rgb, load_voc_example
    from mask_od.label_map import read_label_map
    from mask_od.synthetic import make_synthetic_dataset

    d = make_synthetic_dataset(tmp_path / "data", num_images=12, size=160, seed=3)
    xmls = sorted(d.xml_dir.glob("*.xml"))
    (tmp_path / "train.txt").write_text("\n".join(map(str, xmls)) + "\n")
    before = tree_digest(tmp_path / "data")
    counts = write_copy_paste_record(tmp_path / "train.txt", d.label_map_path, tmp_path / "paste.record", copies=2, seed=0)
    assert tree_digest(tmp_path / "data") == before
    assert counts["photos"] == 24 and sum(counts[c] for c in PASTE) > 0
    names = read_label_map(d.label_map_path)
    originals = {p.name: load_voc_example(p) for p in xmls}
    pasted_total = 0
    for raw in tf.data.TFRecordDataset(str(tmp_path / "paste.record")):
        f = tf.train.Example.FromString(raw.numpy()).features.feature
        fname = f["image/filename"].bytes_list.value[0].decode()
        assert fname.startswith(("paste0_", "paste1_"))
        ann, src = next(v for k, v in originals.items() if v[0].image_path.name == fname.split("_", 1)[1])
        img = decode_image_rgb(f["image/encoded"].bytes_list.value[0])
        h, w = img.shape[:2]
        assert (h, w) == src.shape[:2]
        yx = np.stack([f[f"image/object/bbox/{k}"].float_list.value for k in ("ymin", "xmin", "ymax", "xmax")], 1)
        cls = [names[i] for i in f["image/object/class/label"].int64_list.value]
        text = [t.decode() for t in f["image/object/class/text"].bytes_list.value]
        assert cls == text and cls[:ann.num_boxes] == ann.names
        box = yx * [h, w, h, w]
        np.testing.assert_allclose(box[:ann.num_boxes], ann.boxes_xyxy[:, [1, 0, 3, 2]], atol=1e-3)  # originals kept
        new = box[ann.num_boxes:]
        pasted_total += len(new)
        assert set(cls[ann.num_boxes:]) <= set(PASTE)
        face_h = np.median(ann.boxes_xyxy[:, 3] - ann.boxes_xyxy[:, 1])
        for k, (y0, x0, y1, x1) in enumerate(new):
            assert 0.5 * face_h <= y1 - y0 <= 1.6 * face_h  # the photo's face scale (x0.8-1.25 of its median)
            others = np.concatenate([box[:ann.num_boxes], np.delete(new, k, 0)])
            inter = (np.minimum(y1, others[:, 2]) - np.maximum(y0, others[:, 0])).clip(0) * \
                    (np.minimum(x1, others[:, 3]) - np.maximum(x0, others[:, 1])).clip(0)
            assert inter.max(initial=0) == 0  # touches no other box
            yy, xx = slice(int(y0) + 1, int(y1) - 1), slice(int(x0) + 1, int(x1) - 1)
            assert np.abs(img[yy, xx].astype(int) - src[yy, xx].astype(int)).mean() > 8  # pixels changed under the box
    assert pasted_total == sum(counts[c] for c in PASTE)
