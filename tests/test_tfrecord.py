import numpy as np
import pytest
from conftest import tree_digest

from mask_od.annotations import parse_voc_dir
from mask_od.boxes import voc_xyxy_to_norm_yxyx
from mask_od.label_map import LabelMapError, read_label_map
from mask_od.tfrecord import count_records, shard_paths, write_tfrecords


def test_records_decode_with_model_garden_decoder(tiny_voc, tmp_path):
    import tensorflow as tf
    from official.vision.dataloaders.tf_example_decoder import TfExampleDecoder

    anns = parse_voc_dir(tiny_voc.xml_dir)
    res = write_tfrecords(anns, tiny_voc.label_map_path, tmp_path / "train.record", num_shards=3, progress=False)
    assert [p.name for p in res.paths] == [f"train.record-0000{i}-of-00003" for i in range(3)]
    assert count_records(res.paths) == len(anns) == res.num_images
    lm = read_label_map(tiny_voc.label_map_path)
    ids = {n: i for i, n in lm.items()}
    by_name = {a.image_path.name: a for a in anns}
    dec = TfExampleDecoder()
    seen = 0
    for raw in tf.data.TFRecordDataset([str(p) for p in res.paths]):
        d = dec.decode(raw)
        a = by_name[d["source_id"].numpy().decode()]
        np.testing.assert_allclose(d["groundtruth_boxes"].numpy(), voc_xyxy_to_norm_yxyx(a.boxes_xyxy, a.width, a.height), atol=1e-6)
        assert d["groundtruth_classes"].numpy().tolist() == [ids[n] for n in a.names]
        assert d["image"].shape == (a.height, a.width, 3)
        seen += 1
    assert seen == len(anns)
    assert sum(res.boxes_per_class.values()) == sum(a.num_boxes for a in anns)


def test_unknown_class_refused_before_anything_is_written(tiny_voc, tmp_path):
    anns = parse_voc_dir(tiny_voc.xml_dir)
    anns[3].names[0] = "With_Mask"
    with pytest.raises(LabelMapError, match="did you mean 'with_mask'"):
        write_tfrecords(anns, tiny_voc.label_map_path, tmp_path / "out" / "train.record", progress=False)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_failure_midway_leaves_no_partial_record_and_existing_kept(tiny_voc, tmp_path):
    anns = parse_voc_dir(tiny_voc.xml_dir)
    out = tmp_path / "train.record"
    write_tfrecords(anns[:2], tiny_voc.label_map_path, out, progress=False)
    before = tree_digest(tmp_path)
    with pytest.raises(FileExistsError):
        write_tfrecords(anns, tiny_voc.label_map_path, out, progress=False)
    anns[5].image_path = tmp_path / "vanished.jpg"
    with pytest.raises(OSError):
        write_tfrecords(anns, tiny_voc.label_map_path, out, overwrite=True, progress=False)
    assert tree_digest(tmp_path) == before  # old record untouched, no temporary left


def test_shard_names():
    assert [p.name for p in shard_paths("a/t.record", 1)] == ["t.record"]
    with pytest.raises(ValueError):
        shard_paths("t.record", 0)


def test_the_same_photos_give_the_same_record_bytes_in_another_process(tiny_voc, tmp_path):
    """A run resumes only on records with its sha256 (runs.records_identity); the notebook rewrites them on every run,
    so after a kernel restart they must come out byte for byte the same. A tf.train.Example's feature map is written
    in an order that changes between processes unless serialized deterministically."""
    import hashlib
    import subprocess
    import sys

    code = ("import sys; from mask_od.annotations import parse_voc_dir; from mask_od.tfrecord import write_tfrecords; "
            "write_tfrecords(parse_voc_dir(sys.argv[1]), sys.argv[2], sys.argv[3], progress=False)")
    digests = set()
    for k in range(3):
        out = tmp_path / f"p{k}" / "train.record"
        subprocess.run([sys.executable, "-c", code, str(tiny_voc.xml_dir), str(tiny_voc.label_map_path), str(out)],
                       check=True, capture_output=True)
        digests.add(hashlib.sha256(out.read_bytes()).hexdigest())
    assert len(digests) == 1


def test_a_smaller_demo_dataset_holds_only_its_images(tmp_path):
    """The notebook's NUM_DEMO_IMAGES lowered after a run: the demo folder kept the earlier run's extra images, so the
    run trained on 20 where 16 were asked for (and could not resume the 16-image run). A user's file beside them stays."""
    from mask_od.annotations import parse_voc_dir
    from mask_od.synthetic import make_synthetic_dataset

    big = make_synthetic_dataset(tmp_path / "demo", num_images=6, size=96, seed=0)
    mine = big.image_dir / "synthetic_photo.jpg"
    mine.write_bytes(b"mine")
    first = {p.name: p.read_bytes() for p in sorted(big.image_dir.glob("synthetic_000[0-3].jpg"))}
    small = make_synthetic_dataset(tmp_path / "demo", num_images=4, size=96, seed=0)
    assert len(parse_voc_dir(small.xml_dir)) == 4 and sorted(p.name for p in small.image_dir.iterdir()) == sorted([*first, mine.name])
    assert {p.name: p.read_bytes() for p in sorted(small.image_dir.glob("synthetic_000?.jpg"))} == first
