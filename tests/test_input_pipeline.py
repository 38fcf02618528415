import collections

import numpy as np
import pytest

from mask_od.input_pipeline import repeat_factors


def test_repeat_factors_by_hand():
    images = [[1], [1, 2, 2], [1], [3], []]  # shares: class 1 3/5, class 2 1/5, class 3 1/5
    per_image, per_class = repeat_factors(images, threshold=0.8)
    assert per_class == pytest.approx({1: np.sqrt(0.8 / 0.6), 2: 2.0, 3: 2.0})
    assert per_image == pytest.approx([np.sqrt(0.8 / 0.6), 2.0, np.sqrt(0.8 / 0.6), 2.0, 1.0])
    low, _ = repeat_factors(images, threshold=0.1)  # every class above the threshold: nothing repeats
    assert low == [1.0] * 5


def test_oversample_draws_each_element_as_often_as_its_factor():
    import tensorflow as tf

    from mask_od.input_pipeline import oversample

    factors = [1.0, 2.5, 1.0, 3.0]
    ds = oversample(tf.data.Dataset.range(4), factors, seed=0)
    n = 7000
    counts = collections.Counter(int(x) for x in ds.take(n).as_numpy_iterator())
    expected = np.array(factors) / sum(factors) * n
    got = np.array([counts[i] for i in range(4)])
    np.testing.assert_allclose(got, expected, rtol=0.06)
    plain = collections.Counter(int(x) for x in oversample(tf.data.Dataset.range(4), [1.0] * 4, seed=0).take(4000).as_numpy_iterator())
    assert all(abs(c - 1000) <= 64 for c in plain.values()), plain  # once per epoch; the 256-deep shuffle blurs the cut


def test_record_classes_read_back_what_was_written(tmp_path):
    from mask_od.annotations import parse_voc_dir
    from mask_od.input_pipeline import record_classes
    from mask_od.label_map import read_label_map
    from mask_od.synthetic import make_synthetic_dataset
    from mask_od.tfrecord import write_tfrecords

    d = make_synthetic_dataset(tmp_path / "data", num_images=6, size=96, seed=3)
    anns = parse_voc_dir(d.xml_dir)
    write_tfrecords(anns, d.label_map_path, tmp_path / "t.record", progress=False)
    ids = {name: i for i, name in read_label_map(d.label_map_path).items()}
    want = [[ids[n] for n in a.names] for a in anns]
    assert record_classes(str(tmp_path / "t.record")) == want
    assert any(len(set(w)) > 1 for w in want) or len({c for w in want for c in w}) > 1
