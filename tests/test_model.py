import numpy as np
import pytest

from mask_od.config import build_config
from mask_od.model import build_backbone, build_model
from mask_od.weights import WeightsError, resolve_pretrained


@pytest.mark.slow
def test_backbone_features_equal_keras_applications_loaded_from_same_file(shared_weights):
    import tensorflow as tf
    import tf_keras
    from official.vision.ops.preprocess_ops import normalize_image

    def norm(x):  # uint8 in, as the training parser gets it
        return normalize_image(tf.cast(x, tf.uint8))

    size = 96
    img = tf.round(tf.random.stateless_uniform([1, size, size, 3], seed=[1, 2], maxval=255.0))
    ours = build_backbone("mobilenet_v2_fpnlite", size, weights=shared_weights)
    ref = tf_keras.applications.MobileNetV2(input_shape=(size, size, 3), include_top=False, weights=str(shared_weights))
    expected = ref(img / 127.5 - 1.0, training=False).numpy()
    got = ours(norm(img[0])[None], training=False)["5"].numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    untrained = build_backbone("mobilenet_v2_fpnlite", size, weights=None)
    assert not np.allclose(untrained(norm(img[0])[None], training=False)["5"].numpy(), expected, atol=1e-2)
    assert {k: v[1] for k, v in ours.output_specs.items()} == {"3": size // 8, "4": size // 16, "5": size // 32}


def test_resolve_pretrained_local_cache_and_failed_download(tmp_path, monkeypatch):
    import mask_od.weights as m

    assert resolve_pretrained("none", "mobilenet_v2_fpnlite") is None
    local = tmp_path / "w.h5"
    local.write_bytes(b"x")
    assert resolve_pretrained(str(local), "mobilenet_v2_fpnlite") == local
    with pytest.raises(WeightsError, match="not found"):
        resolve_pretrained(str(tmp_path / "missing.h5"), "mobilenet_v2_fpnlite")
    monkeypatch.setattr(m, "cache_dir", lambda: tmp_path / "cache")

    def offline(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(m.urllib.request, "urlopen", offline)
    with pytest.raises(WeightsError, match="pretrained=/path/to/mobilenet_v2_weights"):
        resolve_pretrained("imagenet", "mobilenet_v2_fpnlite")
    assert not list((tmp_path / "cache").glob("*"))  # no partial file left
    cached = tmp_path / "cache" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    cached.write_bytes(b"x")
    assert resolve_pretrained("imagenet", "mobilenet_v2_fpnlite") == cached  # no network needed once cached
    cached.with_name(cached.name + ".sha256").write_text("0" * 64 + "  w.h5\n")  # recorded at download
    with pytest.raises(WeightsError, match="do not match their recorded sha256"):
        resolve_pretrained("imagenet", "mobilenet_v2_fpnlite")


@pytest.mark.slow
@pytest.mark.parametrize("size", [320, 640])
def test_fpnlite_shapes_match_the_zoo_layout(size):
    import tensorflow as tf

    model = build_model(build_config(image_size=size, pretrained="none"), num_classes=3)
    out = model(tf.zeros([1, size, size, 3]), training=True)
    for level in range(3, 8):
        s = -(-size // 2**level)
        assert out["cls_outputs"][str(level)].shape == (1, s, s, 9 * 4)  # 9 anchors x (3 classes + background)
        assert out["box_outputs"][str(level)].shape == (1, s, s, 9 * 4)
    if size == 320:
        assert 2_500_000 < model.count_params() < 3_500_000  # about the zoo FPNLite's size


@pytest.mark.slow
def test_resnet50_fpn_builds():
    import tensorflow as tf

    model = build_model(build_config(backbone="resnet50_fpn", image_size=128, pretrained="none"), num_classes=2)
    out = model(tf.zeros([1, 128, 128, 3]), training=False)
    assert out["detection_boxes"].shape == (1, 100, 4)


def test_download_is_cached_with_its_checksum(tmp_path, monkeypatch):
    import hashlib
    import io

    import mask_od.weights as m

    monkeypatch.setattr(m, "cache_dir", lambda: tmp_path)
    payload = b"weights" * 1000
    calls = []

    def fake_urlopen(url, timeout):
        calls.append(url)
        return io.BytesIO(payload)

    monkeypatch.setattr(m.urllib.request, "urlopen", fake_urlopen)
    path = resolve_pretrained("imagenet", "mobilenet_v2_fpnlite")
    assert path.read_bytes() == payload and calls[0].startswith("https://storage.googleapis.com/tensorflow/keras-applications/")
    assert path.with_name(path.name + ".sha256").read_text().split()[0] == hashlib.sha256(payload).hexdigest()
    assert resolve_pretrained("imagenet", "mobilenet_v2_fpnlite") == path and len(calls) == 1
    with pytest.raises(WeightsError, match="checksum mismatch"):
        (tmp_path / path.name).unlink()
        resolve_pretrained("imagenet", "mobilenet_v2_fpnlite", sha256="0" * 64)
    assert not path.exists()


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["mobilenet_v2_fpnlite", "resnet50_fpn"])
def test_features_from_pixels_equal_the_backbone_on_normalized_images(backbone):
    """The TFLite export feeds pixels straight to the Keras-applications network; it must see what training saw."""
    import tensorflow as tf
    import tf_keras
    from official.vision.ops.preprocess_ops import normalize_image

    from mask_od.model import backbone_features_from_pixels

    tf_keras.utils.set_random_seed(0)
    size = 64
    cfg = build_config(image_size=size, backbone=backbone, pretrained="none")
    model = build_model(cfg, num_classes=2)
    pixels = tf.round(tf.random.stateless_uniform([2, size, size, 3], seed=[3, 4], maxval=255.0))
    normalized = tf.stack([normalize_image(tf.cast(p, tf.uint8)) for p in pixels])
    want = model.backbone(normalized, training=False)
    got = backbone_features_from_pixels(model, cfg, pixels)
    flipped = backbone_features_from_pixels(model, cfg, pixels[..., ::-1])  # channel order matters: the check can fail
    assert set(got) == {"3", "4", "5"}
    for level in got:
        w = want[level].numpy()
        scale = float(np.abs(w).max())  # untrained features can be tiny: compare relative to their size
        assert scale > 0
        np.testing.assert_allclose(got[level].numpy(), w, rtol=1e-4, atol=1e-4 * scale)
    w3 = want["3"].numpy()
    assert np.abs(flipped["3"].numpy() - w3).max() > 1e-2 * np.abs(w3).max()
