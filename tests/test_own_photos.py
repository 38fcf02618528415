"""Your own photos to a live detector (issue 23) and XML/image pairing (issue 25, items 1 and 6): capture folders with
subfolders, one image-file rule, pre-labels never from a demo-trained model, the labeller on EXIF-rotated photos and
same-name images, a run on other data never resumed, and the whole journey on real photos."""

import json
import shutil
import warnings

import numpy as np
import pytest
from conftest import real_photo_video, tiny_config, write_exif_jpeg, write_jpeg, write_xml


# --- issue 25.1: an XML goes with the image of its name beside it ----------------------------------------------------------
def test_renumbered_captures_pair_by_name_and_warn_naming_both(tmp_path):
    from mask_od.annotations import parse_voc_dir
    from mask_od.errors import DataWarning

    d = tmp_path / "photos"
    d.mkdir()
    write_jpeg(d / "img_3.jpg")
    write_jpeg(d / "img_4.jpg")
    # img_3 was deleted and img_4 -> img_3, img_5 -> img_4 renamed, XML too, their <filename> left as it was
    write_xml(d / "img_3.xml", "img_4.jpg", 80, 60, [("with_mask", 5, 5, 30, 30)])
    write_xml(d / "img_4.xml", "img_5.jpg", 80, 60, [("without_mask", 40, 20, 70, 50)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        anns = parse_voc_dir(d)
    assert [(a.xml_path.name, a.image_path.name) for a in anns] == [("img_3.xml", "img_3.jpg"), ("img_4.xml", "img_4.jpg")]
    msgs = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    assert any("img_3.xml" in m and "img_4.jpg" in m and "img_3.jpg" in m for m in msgs), msgs
    assert any("img_4.xml" in m and "img_5.jpg" in m for m in msgs), msgs


def test_two_xml_files_for_one_image_are_refused(tmp_path):
    from mask_od.annotations import AnnotationError, parse_voc_dir

    d = tmp_path / "photos"
    d.mkdir()
    write_jpeg(d / "a.jpg")
    write_xml(d / "a.xml", "a.jpg", 80, 60, [("with_mask", 5, 5, 30, 30)])
    write_xml(d / "b.xml", "a.jpg", 80, 60, [("with_mask", 5, 5, 30, 30)])  # no b.* beside it: <filename> points at a.jpg
    with pytest.raises(AnnotationError, match=r"b.xml: pairs with .*a.jpg, which .*a.xml labels already"):
        parse_voc_dir(d)


def test_images_without_annotation_and_xml_without_suffix_are_counted(tmp_path):
    from mask_od.annotations import parse_voc_dir
    from mask_od.errors import DataWarning

    d = tmp_path / "photos"
    d.mkdir()
    for stem in ("a", "b", "c", "d"):
        write_jpeg(d / f"{stem}.jpg")
    write_xml(d / "a.xml", "a.jpg", 80, 60, [("with_mask", 5, 5, 30, 30)])
    write_xml(d / "b.xml", "b.jpg", 80, 60, [])  # a negative: labelled, no object
    write_xml(d / "c", "c.jpg", 80, 60, [("with_mask", 5, 5, 30, 30)])  # LabelImg, name typed without .xml
    with pytest.warns(DataWarning) as caught:
        anns = parse_voc_dir(d)
    assert len(anns) == 2
    line = next(str(w.message) for w in caught if "without annotation" in str(w.message))
    assert "2 image(s) without annotation" in line and "c.jpg, d.jpg" in line
    assert "1 annotation(s) without the .xml suffix" in line and ": c" in line


def test_partition_and_generate_tfrecord_say_what_they_left_out(tmp_path):
    import subprocess
    import sys

    from conftest import ROOT

    from mask_od.label_map import write_label_map

    d = tmp_path / "images"
    d.mkdir()
    for stem in ("a", "b", "c", "d", "e"):
        write_jpeg(d / f"{stem}.jpg")
    for stem in ("a", "b", "c"):
        write_xml(d / f"{stem}.xml", f"{stem}.jpg", 80, 60, [("with_mask", 5, 5, 30, 30)])
    write_xml(d / "d", "d.jpg", 80, 60, [("with_mask", 5, 5, 30, 30)])
    lm = write_label_map({1: "with_mask"}, tmp_path / "label_map.pbtxt")
    for args in (["partition_dataset.py", "-x", "-i", d, "-o", tmp_path / "split", "-r", "0.34"],
                 ["generate_tfrecord.py", "-x", d, "-l", lm, "-o", tmp_path / "train.record"]):
        p = subprocess.run([sys.executable, str(ROOT / "scripts" / args[0]), *map(str, args[1:])], capture_output=True,
                           text=True, timeout=300, cwd=ROOT)
        out = p.stdout + p.stderr
        assert p.returncode == 0, out[-2000:]
        assert "2 image(s) without annotation (no XML of the same name), skipped: d.jpg, e.jpg" in out, out[-2000:]
        assert "1 annotation(s) without the .xml suffix, not read (rename them to NAME.xml): d" in out


# --- issue 23: subfolders and one image rule --------------------------------------------------------------------------------
def test_capture_subfolders_and_upper_case_suffixes_are_read_everywhere(tmp_path):
    from mask_od.annotations import is_image_file, list_image_files, parse_voc_dir
    from mask_od.labeling import image_files
    from mask_od.notebook import your_photos
    from mask_od.sources import iter_frames

    collected = tmp_path / "collected"
    for label in ("with_mask", "without_mask"):
        (collected / label).mkdir(parents=True)
    write_jpeg(collected / "with_mask" / "IMG_0001.JPG")
    write_xml(collected / "with_mask" / "IMG_0001.xml", "IMG_0001.JPG", 80, 60, [("with_mask", 5, 5, 30, 30)])
    write_jpeg(collected / "without_mask" / "b.jpeg")
    write_xml(collected / "without_mask" / "b.xml", "b.jpeg", 80, 60, [("without_mask", 5, 5, 30, 30)])
    write_jpeg(collected / "without_mask" / "c.Png")  # not labelled yet
    assert all(is_image_file(n) for n in ("a.JPG", "a.jpeg", "a.PNG", "a.webp", "a.tif", "a.bmp"))
    anns = parse_voc_dir(collected)
    assert sorted(a.image_path.name for a in anns) == ["IMG_0001.JPG", "b.jpeg"]
    assert [p.name for p in image_files(collected)] == [p.name for p in list_image_files(collected)] == ["IMG_0001.JPG", "b.jpeg", "c.Png"]
    labelled, missing, line = your_photos(collected)
    assert (labelled, [p.name for p in missing]) == (2, ["c.Png"]) and "2 labelled, 1 without labels (skipped): c.Png" in line
    assert len(list(iter_frames(collected / "with_mask"))) == 1  # IMG_0001.JPG is an image for live sources too


# --- issue 23: the labeller ------------------------------------------------------------------------------------------------
def test_two_images_of_one_name_are_refused_naming_both(tmp_path):
    from mask_od.labeling import Labeler, LabelingError

    d = tmp_path / "photos"
    d.mkdir()
    write_jpeg(d / "a.jpg")
    write_jpeg(d / "a.png")
    write_jpeg(d / "b.jpg")
    with pytest.raises(LabelingError, match=r"a\.jpg and .*a\.png"):
        Labeler(d, {1: "with_mask"})
    assert sorted(p.name for p in d.iterdir()) == ["a.jpg", "a.png", "b.jpg"]  # nothing written


def test_exif_rotated_photo_is_shown_as_stored(tmp_path):
    """The widget gets the stored pixels (400 x 300) without EXIF, not the file's bytes a browser shows turned
    (300 x 400), so the boxes drawn are in the pixels the XML and training use."""
    import cv2

    from mask_od.annotations import exif_orientation

    pytest.importorskip("jupyter_bbox_widget")
    from mask_od.labeling import Labeler

    d = tmp_path / "photos"
    d.mkdir()
    write_exif_jpeg(d / "phone.jpg")
    lab = Labeler(d, {1: "with_mask"})
    lab.view  # noqa: B018 - builds the widget
    lab.show(0)
    shown = cv2.imdecode(np.frombuffer(lab._view_widget.image_bytes, np.uint8), cv2.IMREAD_UNCHANGED)
    assert shown.shape[:2] == (300, 400) and exif_orientation(lab._view_widget.image_bytes) == 0
    assert "EXIF orientation 6" in " ".join(lab.messages)
    lab.save([{"x": 80, "y": 60, "width": 160, "height": 150, "label": "with_mask"}])
    from mask_od.annotations import parse_voc_xml

    assert parse_voc_xml(d / "phone.xml").boxes_xyxy.tolist() == [[80, 60, 240, 210]]


# --- issue 23: pre-labels ---------------------------------------------------------------------------------------------------
def _fake_export(ws, name, run_dir, classes):
    from mask_od.label_map import write_label_map

    out = ws / "exported-models" / name
    out.mkdir(parents=True)
    (out / "model_float32.tflite").write_bytes(b"not read")
    (out / "export_report.json").write_text(json.dumps({"run_dir": str(run_dir)}))
    write_label_map(dict(enumerate(classes, 1)), out / "label_map.pbtxt")
    return out


def test_prelabels_never_come_from_a_model_trained_on_demo_data(tmp_path):
    import os

    from mask_od.notebook import prelabel_model
    from mask_od.runs import DATA_FILE
    from mask_od.shipped import default_live_model

    ws = tmp_path / "ws"
    runs = {}
    for name, synthetic in (("demo", 200), ("mine", 0), ("helmets", 0)):
        runs[name] = tmp_path / "runs" / name
        runs[name].mkdir(parents=True)
        (runs[name] / DATA_FILE).write_text(json.dumps({"train_records": {"files": [], "examples": 200, "synthetic": synthetic}}))
    _fake_export(ws, "demo", runs["demo"], ["with_mask", "without_mask", "mask_weared_incorrect"])
    classes = ["with_mask", "without_mask"]
    model, line = prelabel_model(ws, classes)  # after `make demo`: the demo export is the only one
    assert model == default_live_model() and "shipped face-mask model" in line and "demo (trained on demo data" in line
    mine = _fake_export(ws, "mine", runs["mine"], ["without_mask", "with_mask"])
    helmets = _fake_export(ws, "helmets", runs["helmets"], ["helmet"])
    os.utime(helmets / "model_float32.tflite", (2e9, 2e9))  # the newest, but none of these classes
    model, line = prelabel_model(ws, classes)
    assert model == mine / "model_float32.tflite" and "your export" in line
    (mine / "model_float32.tflite").rename(mine / "model_int8.tflite")  # an export of the int8 file alone counts too
    model, line = prelabel_model(ws, classes)
    assert model == mine / "model_int8.tflite" and "your export" in line


# --- issue 23: a run on other data ------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_run_on_other_data_is_not_resumed(trained_run, tiny_records, tmp_path):
    from mask_od.train import TrainingError, train

    _, cfg = trained_run
    run = tmp_path / "run"
    shutil.copytree(cfg.output_dir, run)
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
    other = cfg.replace(output_dir=str(run), train_records=tiny_records["four"], val_records="")  # same label map and steps
    with pytest.raises(TrainingError, match=r"other data or settings \(train records: 20 examples .* -> 4 examples"):
        train(other, progress=False)
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*")} == before  # nothing written
    from mask_od.runs import free_run_dir

    assert free_run_dir(run, cfg.replace(output_dir=str(run), val_records="")) == (run, f"run folder {run} (resumes it)")
    where, line = free_run_dir(run, other)
    assert where == tmp_path / "run-2" and "holds a run on other data" in line and "4 examples" in line
    assert line.startswith(f"run folder {where} (new): ")
    (where / "checkpoints").mkdir(parents=True)  # an empty checkpoints folder holds nothing to resume
    assert free_run_dir(run, other)[1].startswith(f"run folder {where} (new): ")
    import json

    from mask_od.runs import DATA_FILE, records_identity

    other.save(where / "config.yaml")  # what a run of `other` leaves there: the same line says it resumes
    (where / DATA_FILE).write_text(json.dumps({"train_records": records_identity(other.train_records)}))
    (where / "checkpoints" / "checkpoint").write_text('model_checkpoint_path: "ckpt-1"\n')
    assert free_run_dir(run, other)[1].startswith(f"run folder {where} (resumes it): ")
    changed = cfg.replace(output_dir=str(run), learning_rate=cfg.learning_rate * 2)
    assert "learning_rate" in free_run_dir(run, changed)[1]


# --- issue 23: the whole journey --------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_own_photos_capture_label_prepare_train_export_live(tmp_path, capsys):
    """A video of real photos stands in for the webcam: capture 2 labels x 4 frames into per-label folders, label by
    accepting the pre-labels (one box corrected), prepare from the capture folder, train a few steps from face_mask
    (class layer mapped by name), export, and run live on the video."""
    from mask_od.annotations import parse_voc_xml
    from mask_od.capture import capture_images
    from mask_od.detect import Detector
    from mask_od.detections import ALL
    from mask_od.export import export_model
    from mask_od.labeling import Labeler, widget_to_objects
    from mask_od.live import run_live
    from mask_od.notebook import prelabel_model, your_photos
    from mask_od.prepare import prepare_dataset
    from mask_od.runs import free_run_dir
    from mask_od.train import train

    video = real_photo_video(tmp_path / "webcam.mp4", 8)
    ws = tmp_path / "workspace"
    collected = ws / "images" / "collected"
    cap = capture_images(["with_mask", "without_mask"], num_images=4, interval_s=0, source=video, out_dir=collected)
    assert cap.total == 8 and not cap.ended_early
    classes = {1: "with_mask", 2: "without_mask"}
    model_file, line = prelabel_model(ws, classes.values())
    assert "shipped face-mask model" in line
    lab = Labeler(collected, classes, detector=Detector(model_file, score_threshold=ALL))
    next(i for i in range(len(lab.images)) if lab.show(i).boxes)  # the first picture with pre-labels
    boxes = [dict(b) for b in lab.state.boxes]
    boxes[0].update(x=boxes[0]["x"] + 3, width=boxes[0]["width"] - 3, label="without_mask")  # one box corrected by hand
    want = widget_to_objects(boxes, lab.state.width, lab.state.height, list(classes.values()))
    saved = parse_voc_xml(lab.save(boxes))
    assert list(zip(saved.names, saved.boxes_xyxy.tolist())) == [(n, [float(v) for v in b]) for n, *b in want]
    assert lab.accept_prelabels() == 7
    assert your_photos(collected)[0] == 8
    data = prepare_dataset(collected, ws, test_ratio=0.25, progress=False, plot=False)
    assert data.report["images"] == 8 and data.report["boxes"] >= 6
    config = tiny_config({"train_records": data.train_records, "val_records": data.test_records, "label_map": str(data.label_map)},
                         ws / "models" / "mine", pretrained="face_mask", steps=3, image_size=96, batch_size=2, checkpoint_every=3)
    run_dir, line = free_run_dir(config.output_dir, config)
    assert run_dir == ws / "models" / "mine" and "(new)" in line
    capsys.readouterr()
    train(config, progress=False)
    assert "class layer mapped by name: kept" in capsys.readouterr().out
    export = export_model(run_dir, ws / "exported-models" / "mine", tflite=("float32",), num_check=2)
    assert (ws / "exported-models" / "mine" / "model_float32.tflite").is_file(), export
    summary = run_live(Detector(ws / "exported-models" / "mine" / "model_float32.tflite"), video, display="none",
                       output_video=ws / "live.mp4", log_path=ws / "live.jsonl")
    assert summary.frames == 8 and (ws / "live.jsonl").read_text().count("\n") == 8
    # the export is trained on real photos of these classes: from now on it gives the pre-labels
    assert prelabel_model(ws, classes.values())[0] == ws / "exported-models" / "mine" / "model_float32.tflite"
