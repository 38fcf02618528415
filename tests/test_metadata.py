"""TFLite Metadata: exported files carry labels, input normalization and output groups, and MediaPipe Tasks'
ObjectDetector (in its own tool venv, a subprocess) runs them with the same detections as Detector."""

import shutil

import numpy as np
import pytest

from mask_od.metadata import MetadataError, export_metadata, labels_in_class_order, metadata_labels, tool_python


@pytest.fixture(scope="session")
def mediapipe_env():
    """The MediaPipe tool venv; skipped with the reason when it is not built (.ci/run builds it)."""
    from mask_od.metadata import TOOL_ENV

    if tool_python(TOOL_ENV) is None:
        pytest.skip(f"no MediaPipe tool venv at {TOOL_ENV} (build it: python scripts/write_metadata.py --build, "
                    "~100 s and ~1 GB; .ci/run does)")
    return TOOL_ENV


def test_labels_follow_the_0_based_classes():
    assert labels_in_class_order({2: "b", 1: "a", 3: "c"}) == ["a", "b", "c"]
    with pytest.raises(MetadataError, match=r"not 1\.\.2"):
        labels_in_class_order({1: "a", 3: "c"})  # class 1 of the file would be named "c"


def test_export_says_why_metadata_was_not_written(tmp_path, capsys):
    files = ["model_float32.tflite", "model_int8.tflite"]
    r = export_metadata(tmp_path, files, {1: "a"}, None, env=tmp_path / "no_env")
    assert r["written"] == [] and "no MediaPipe tool venv" in r["skipped"] and str(tmp_path / "no_env") in r["skipped"]
    assert "TFLite Metadata not written into 2 file(s): no MediaPipe tool venv" in capsys.readouterr().out
    assert export_metadata(tmp_path, files, {1: "a"}, False)["skipped"] == "metadata=False"
    assert not list(tmp_path.iterdir())  # nothing built or written


def test_a_failed_tool_venv_build_says_why_and_leaves_nothing(tmp_path, capsys):
    from mask_od.metadata import build_tool_env

    with pytest.raises(MetadataError, match=r"-m venv .*failed \(exit 1\)"):
        build_tool_env(tmp_path / "env", python="false")
    assert not (tmp_path / "env").exists() and tool_python(tmp_path / "env") is None
    assert "building the MediaPipe tool venv" in capsys.readouterr().out


def test_shipped_files_carry_metadata():
    from mask_od.label_map import read_label_map
    from mask_od.shipped import MODELS_DIR

    folder = MODELS_DIR / "face_mask"
    names = labels_in_class_order(read_label_map(folder / "label_map.pbtxt"))
    for v in ("float32", "int8"):
        assert metadata_labels(folder / f"model_{v}.tflite") == names, v


@pytest.mark.slow
def test_metadata_is_removed_without_touching_the_model(tmp_path):
    """What lets metadata be written again over metadata (the writer refuses to pack labels.txt twice)."""
    from ai_edge_litert.interpreter import Interpreter

    from mask_od.lite_internals import without_metadata
    from mask_od.shipped import MODELS_DIR

    data = (MODELS_DIR / "face_mask" / "model_int8.tflite").read_bytes()
    bare = without_metadata(data)
    assert b"TFLITE_METADATA" in data and b"TFLITE_METADATA" not in bare
    (tmp_path / "bare.tflite").write_bytes(bare)
    assert metadata_labels(tmp_path / "bare.tflite") is None and without_metadata(bare) is bare  # no labels.txt packed
    import cv2

    from mask_od.detect import letterbox_rgb

    photo = cv2.cvtColor(cv2.imread(str(sorted((MODELS_DIR / "face_mask" / "examples").glob("*.jpg"))[0])), cv2.COLOR_BGR2RGB)
    x = np.round(letterbox_rgb(photo, 320)[0]).astype(np.uint8)[None]
    outs = []
    for model in (data, bare):
        it = Interpreter(model_content=model)
        outs.append(it.get_signature_runner()(image=x))
    assert list(outs[1]) == list(outs[0])
    n = int(outs[0]["num_detections"][0])  # past the count the output rows are whatever memory held
    assert n > 0 and int(outs[1]["num_detections"][0]) == n
    assert all(np.array_equal(outs[0][k][0, :n], outs[1][k][0, :n]) for k in ("detection_boxes", "detection_classes", "detection_scores"))


def test_export_report_says_whether_metadata_was_written(exported):
    out, report, _ = exported
    from mask_od.label_map import read_label_map

    md = report["metadata"]
    if md["written"]:
        names = labels_in_class_order(read_label_map(out / "label_map.pbtxt"))
        assert md["written"] == ["model_float32.tflite", "model_float16.tflite", "model_int8.tflite"]
        assert all(metadata_labels(out / f) == names for f in md["written"])
        import cv2

        from mask_od.detect import Detector, letterbox_rgb
        from mask_od.metadata import mediapipe_detect
        from mask_od.shipped import MODELS_DIR

        photo = cv2.cvtColor(cv2.imread(str(sorted((MODELS_DIR / "face_mask" / "examples").glob("*.jpg"))[0])), cv2.COLOR_BGR2RGB)
        for f in md["written"]:  # every variant of a fresh export runs in MediaPipe as it is
            det = Detector(out / f, score_threshold=0.0)
            x = np.clip(np.rint(letterbox_rgb(photo, det.input_size)[0]), 0, 255).astype(np.uint8)
            ref, got = det.predict(x), mediapipe_detect(out / f, x)
            assert sorted(ref.names) == sorted(d["name"] for d in got) and len(ref), f
            assert np.allclose(ref.scores, [d["score"] for d in got], atol=0.02), f
    else:
        assert "MediaPipe tool venv" in md["skipped"] and metadata_labels(out / "model_float32.tflite") is None


def xywh_to_norm_yxyx(xywh, size: int) -> np.ndarray:
    x, y, w, h = xywh
    return np.array([y, x, y + h, x + w], np.float32) / size


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["float32", "int8"])
def test_mediapipe_object_detector_runs_the_files_like_detector(variant, mediapipe_env, tmp_path):
    """The shipped file, its metadata written again by the writer (over the metadata it carries), in MediaPipe Tasks'
    ObjectDetector and in Detector on the same letterboxed photo: same classes, IoU >= 0.8, scores within 0.02."""
    import cv2

    from mask_od.boxes import box_iou_yxyx
    from mask_od.detect import Detector, letterbox_rgb
    from mask_od.detections import SHOWN
    from mask_od.label_map import read_label_map
    from mask_od.metadata import mediapipe_detect, write_metadata
    from mask_od.shipped import MODELS_DIR

    folder = MODELS_DIR / "face_mask"
    path = shutil.copy(folder / f"model_{variant}.tflite", tmp_path / f"model_{variant}.tflite")
    label_map = read_label_map(folder / "label_map.pbtxt")
    write_metadata([path], label_map, mediapipe_env)
    assert metadata_labels(path) == labels_in_class_order(label_map)

    det = Detector(path, label_map=label_map, score_threshold=0.0)
    photo = cv2.cvtColor(cv2.imread(str(sorted((folder / "examples").glob("*.jpg"))[0])), cv2.COLOR_BGR2RGB)
    square = np.clip(np.rint(letterbox_rgb(photo, det.input_size)[0]), 0, 255).astype(np.uint8)  # both see these pixels
    ref = det.predict(square)
    low, tol = SHOWN, 0.02  # the detections a user sees in prediction grids
    got = mediapipe_detect(path, square, mediapipe_env, score_threshold=low - tol)
    ref_keep = ref.scores >= low
    assert ref_keep.sum() >= 3  # faces found on the photo: the comparison is not empty

    def match(name, score, box, others):
        """Index of the best-overlapping detection of the same class in ``others`` and its IoU and score gap."""
        cand = [(float(box_iou_yxyx(box[None], b[None])[0, 0]), abs(score - s), i) for i, (n, s, b) in enumerate(others) if n == name]
        return max(cand, default=(0.0, 1.0, -1))

    mp_dets = [(d["name"], d["score"], xywh_to_norm_yxyx(d["xywh"], det.input_size)) for d in got]
    ref_dets = [(n, float(s), b) for n, s, b in zip(ref.names, ref.scores, ref.boxes)]
    for name, score, box in (d for d, k in zip(ref_dets, ref_keep) if k):  # every Detector detection in MediaPipe's
        iou, gap, _ = match(name, score, box, mp_dets)
        assert iou >= 0.8 and gap <= tol, (variant, name, score, iou, gap)
    for name, score, box in (d for d in mp_dets if d[1] >= low + tol):  # and nothing MediaPipe adds
        iou, gap, _ = match(name, score, box, ref_dets)
        assert iou >= 0.8 and gap <= tol, (variant, "MediaPipe only", name, score, iou, gap)


@pytest.mark.slow
def test_metadata_written_into_a_packaged_model_keeps_it_verifiable(mediapipe_env, tmp_path):
    """scripts/write_metadata.py on a packaged model folder: new sums in manifest.json and the card, report entry."""
    import json

    from mask_od.package import add_metadata
    from mask_od.shipped import MODELS_DIR, sha256_file, verify

    folder = shutil.copytree(MODELS_DIR / "face_mask", tmp_path / "face_mask")
    entry = add_metadata(folder, mediapipe_env)
    assert entry["written"] == ["model_640_float32.tflite", "model_640_int8.tflite", "model_float32.tflite", "model_int8.tflite"]
    manifest = verify(folder)  # every file against its (new) sum
    card = (folder / "README.md").read_text()
    assert all(f"`{sha256_file(folder / f)}`" in card for f in entry["written"])  # the card lists the new sums
    assert json.loads((folder / "export_report.json").read_text())["metadata"] == entry
    assert metadata_labels(folder / "model_int8.tflite") == ["with_mask", "without_mask", "mask_weared_incorrect"]


def test_metadata_is_written_from_a_jupyter_kernel(mediapipe_env, tmp_path, monkeypatch):
    """A notebook kernel sets MPLBACKEND to its inline backend, which the tool venv's matplotlib (loaded by mediapipe)
    rejects: the export from the notebook wrote no metadata while the same export from a shell did."""
    from mask_od.label_map import read_label_map
    from mask_od.metadata import write_metadata
    from mask_od.shipped import MODELS_DIR

    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    folder = MODELS_DIR / "face_mask"
    path = shutil.copy(folder / "model_int8.tflite", tmp_path / "model_int8.tflite")
    label_map = read_label_map(folder / "label_map.pbtxt")
    write_metadata([path], label_map, mediapipe_env)
    assert metadata_labels(path) == labels_in_class_order(label_map)
