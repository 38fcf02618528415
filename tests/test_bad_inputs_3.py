"""Issue 25: bad inputs, round three (numbered as in the issue): refused naming the file and what is wrong, and nothing
under the user's folders changed (sha256 of every file before and after)."""

import re
import shutil
from pathlib import Path

import pytest
from conftest import tiny_config, tree_digest, write_jpeg, write_xml
from test_faults import one_error_line, run_script


def _shared_photo(shared_face_mask: Path, folder: Path, stem: str = "maksssksksss0") -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    img = shutil.copy(shared_face_mask / "images" / f"{stem}.jpg", folder)
    xml = shutil.copy(shared_face_mask / "annotations" / f"{stem}.xml", folder)
    return Path(img), Path(xml)


def _normalize_xml(xml: Path, w: int, h: int) -> None:
    """Rewrite the boxes as fractions of the image, as some tools save VOC."""
    def frac(m):
        tag, v = m.group(1), float(m.group(2))
        return f"<{tag}>{v / (w if tag[0] == 'x' else h):.4f}</{tag}>"

    xml.write_text(re.sub(r"<([xy]m(?:in|ax))>([\d.]+)</\1>", frac, xml.read_text()))


# --- 2. normalized VOC coordinates ----------------------------------------------------------------------------------
def test_2_normalized_coordinates_are_refused_naming_the_file(shared_face_mask, tmp_path):
    from mask_od.annotations import AnnotationError, parse_voc_xml

    data = tmp_path / "labels"
    _, xml = _shared_photo(shared_face_mask, data)
    _normalize_xml(xml, 512, 366)
    before = tree_digest(data)
    with pytest.raises(AnnotationError, match=r"maksssksksss0\.xml: all \d+ box coordinates are <= 1 .*512x366.*look normalized") as e:
        parse_voc_xml(xml)
    import xml.etree.ElementTree as ET  # noqa: S405 - the test's own file

    first = ET.parse(xml).find("object/bndbox")
    assert str([float(first.findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax")]) in str(e.value)  # the real first box
    out = tmp_path / "out" / "train.record"
    lm = tmp_path / "label_map.pbtxt"
    lm.write_text("item { id: 1 name: 'with_mask' }\nitem { id: 2 name: 'without_mask' }\nitem { id: 3 name: 'mask_weared_incorrect' }\n")
    p = run_script("generate_tfrecord.py", "-x", data, "-l", lm, "-o", out)
    one_error_line(p, "1 of 1 annotation files are unusable")
    assert re.search(r"maksssksksss0\.xml: all \d+ box coordinates .* look normalized", p.stderr), p.stdout + p.stderr
    assert not out.exists() and tree_digest(data) == before


@pytest.mark.parametrize("box, words", [
    ((0, 0, 1, 1), "look normalized"),  # the whole image, normalized
    ((0.2, 0.3, 0.25, 0.31), "look normalized"),
    ((10.2, 20, 10.7, 40), "0.5 x 20 px"),  # a sub-pixel box in pixels
])
def test_2_sub_pixel_and_normalized_boxes_are_refused(tmp_path, box, words):
    from mask_od.annotations import AnnotationError, parse_voc_xml

    write_jpeg(tmp_path / "a.jpg", 300, 400)
    xml = write_xml(tmp_path / "a.xml", "a.jpg", 400, 300, [("with_mask", *box)])
    with pytest.raises(AnnotationError, match=re.escape(words)) as e:
        parse_voc_xml(xml)
    assert str(xml) in str(e.value)


def test_2_one_normalized_box_among_pixel_boxes_is_refused(tmp_path):
    from mask_od.annotations import AnnotationError, parse_voc_xml

    write_jpeg(tmp_path / "a.jpg", 300, 400)
    xml = write_xml(tmp_path / "a.xml", "a.jpg", 400, 300, [("with_mask", 10, 10, 50, 60), ("without_mask", 0.5, 0.5, 0.7, 0.9)])
    with pytest.raises(AnnotationError, match=r"a\.xml: object #1 \(without_mask\): .* only 0.2 x 0.4 px"):
        parse_voc_xml(xml)


# --- 3. records written with another label map ------------------------------------------------------------------------
SWAPPED = "item { id: 1 name: 'without_mask' }\nitem { id: 2 name: 'with_mask' }\nitem { id: 3 name: 'mask_weared_incorrect' }\n"


def test_3_records_with_another_label_map_are_refused_by_evaluation_and_training(tiny_records, tmp_path):
    from mask_od.evaluate import examples_from_records
    from mask_od.label_map import LabelMapError, read_label_map
    from mask_od.train import train

    before = tree_digest(Path(tiny_records["root"]))
    swapped = tmp_path / "swapped.pbtxt"
    swapped.write_text(SWAPPED)
    lm = read_label_map(swapped)
    with pytest.raises(LabelMapError, match=r"test\.record: written with another label map than my map .*id 1 is "
                                            r"'with_mask' in the records .* but in my map 1 is 'without_mask'"):
        examples_from_records(tiny_records["val_records"], label_map=lm, label_map_name="my map")
    assert len(list(examples_from_records(tiny_records["val_records"], label_map=read_label_map(tiny_records["label_map"])))) == 4
    cfg = tiny_config(tiny_records, tmp_path / "run", label_map=str(swapped), steps=1, pretrained="none")
    with pytest.raises(LabelMapError, match=rf"train\.record: .*label_map {re.escape(str(swapped))}"):
        train(cfg, progress=False)
    assert not (tmp_path / "run").exists()
    assert tree_digest(Path(tiny_records["root"])) == before


def test_3_evaluate_script_refuses_records_of_another_label_map(shared_face_mask, tmp_path):
    """Photos' records written with without_mask = 1, evaluated with the shipped model (with_mask = 1)."""
    from mask_od.annotations import parse_voc_dir
    from mask_od.tfrecord import write_tfrecords

    data = tmp_path / "data"
    for k in (0, 1, 2, 3):
        _shared_photo(shared_face_mask, data, f"maksssksksss{k}")
    swapped = tmp_path / "other_label_map.pbtxt"
    swapped.write_text(SWAPPED)
    rec = tmp_path / "recs" / "val.record"
    write_tfrecords(parse_voc_dir(data), swapped, rec, progress=False)
    before = tree_digest(tmp_path / "recs")
    p = run_script("evaluate.py", "--model", "models/face_mask/model_int8.tflite", "--records", rec, "--out_dir", tmp_path / "ev")
    one_error_line(p, f"{rec}: written with another label map than the label map of models/face_mask/model_int8.tflite",
                   "id 1 is 'without_mask' in the records", "1 is 'with_mask'")
    assert tree_digest(tmp_path / "recs") == before and not (tmp_path / "ev").exists()


@pytest.mark.parametrize("text, words", [
    ("item { id: 1 name: 'with_mask' }\nitem { id: 2 name: 'without_mask' }\n", "id 3 is 'mask_weared_incorrect' in the records"),
    ("item { id: 1 name: 'With_Mask' }\nitem { id: 2 name: 'without_mask' }\nitem { id: 3 name: 'mask_weared_incorrect' }\n",
     "1 is 'With_Mask'"),
    ("item { id: 2 name: 'with_mask' }\nitem { id: 3 name: 'without_mask' }\nitem { id: 4 name: 'mask_weared_incorrect' }\n",
     "id 1 is 'with_mask' in the records"),
])
def test_3_other_label_maps_that_disagree_with_the_records(tiny_records, tmp_path, text, words):
    from mask_od.input_pipeline import check_record_labels
    from mask_od.label_map import LabelMapError, read_label_map

    (tmp_path / "lm.pbtxt").write_text(text)
    with pytest.raises(LabelMapError, match=re.escape(words)):
        check_record_labels(tiny_records["train_records"], read_label_map(tmp_path / "lm.pbtxt"))
    assert check_record_labels(tiny_records["train_records"], read_label_map(tiny_records["label_map"])) > 0


@pytest.mark.slow
def test_3_export_refuses_check_records_of_another_label_map_before_converting(trained_run, tiny_records, tmp_path):
    from mask_od.annotations import parse_voc_dir
    from mask_od.export import export_model
    from mask_od.label_map import LabelMapError
    from mask_od.synthetic import make_synthetic_dataset
    from mask_od.tfrecord import write_tfrecords

    _, cfg = trained_run
    d = make_synthetic_dataset(tmp_path / "data", num_images=3, size=96, seed=5)
    swapped = tmp_path / "swapped.pbtxt"
    swapped.write_text(SWAPPED)
    write_tfrecords(parse_voc_dir(d.xml_dir), swapped, tmp_path / "other.record", progress=False)
    before = tree_digest(Path(cfg.output_dir))
    with pytest.raises(LabelMapError, match=r"other\.record: written with another label map than the run's label map"):
        export_model(cfg.output_dir, tmp_path / "export", tflite=("float32",), check_records=str(tmp_path / "other.record"))
    assert not (tmp_path / "export").exists() and tree_digest(Path(cfg.output_dir)) == before
    # item 5: --overwrite of an earlier export folder that holds the records it is to be checked on
    old = tmp_path / "old_export"
    old.mkdir()
    (old / "export_report.json").write_text("{}")
    shutil.copy(tiny_records["val_records"], old / "val.record")
    before = tree_digest(old)
    p = run_script("export.py", "--run_dir", cfg.output_dir, "--out_dir", old, "--overwrite", "--tflite", "float32",
                   "--check_records", old / "val.record")
    one_error_line(p, f"--out_dir {old} is a folder holding the check records {old / 'val.record'}")
    assert tree_digest(old) == before


# --- 4. partition into hand-sorted folders -----------------------------------------------------------------------------
def test_4_partition_never_removes_a_hand_sorted_split(shared_face_mask, tmp_path):
    """TFODCourse layout: photos moved into images/train and images/test by hand; the only copies."""
    images = tmp_path / "images"
    for k in (0, 1, 2, 3, 5, 8):
        _shared_photo(shared_face_mask, images, f"maksssksksss{k}")
    _shared_photo(shared_face_mask, images / "train", "maksssksksss6")
    _shared_photo(shared_face_mask, images / "test", "maksssksksss7")
    before = tree_digest(images)
    for extra in (("--overwrite",), ()):
        p = run_script("partition_dataset.py", "-i", images, "-o", images, "-r", "0.3", *extra)
        line = one_error_line(p, "did not write", "maksssksksss6", "by hand")
        assert "earlier split" not in line
        assert tree_digest(images) == before


def test_4_overwrite_removes_only_what_the_split_wrote(tmp_path):
    from mask_od.annotations import parse_voc_dir
    from mask_od.split import MANIFEST, split_annotations, write_split
    from mask_od.synthetic import make_synthetic_dataset

    d = make_synthetic_dataset(tmp_path / "d", num_images=10, size=96, seed=3)
    anns = parse_voc_dir(d.xml_dir)
    out = tmp_path / "images"
    write_split(split_annotations(anns, 0.3, seed=0), out)
    with pytest.raises(FileExistsError, match="earlier split made by mask_od.*--overwrite"):
        write_split(split_annotations(anns, 0.3, seed=1), out)
    # a photo added by hand, then a label corrected in the copy: --overwrite removes nothing and names them
    mine = write_jpeg(out / "train" / "my_photo.jpg")
    before = tree_digest(out)
    with pytest.raises(FileExistsError, match=r"1 file\(s\) that mask_od did not write \(train/my_photo\.jpg\)"):
        write_split(split_annotations(anns, 0.3, seed=1), out, overwrite=True)
    assert tree_digest(out) == before
    mine.unlink()
    fixed = next((out / "test").glob("*.xml"))
    fixed.write_text(fixed.read_text().replace("<difficult>0", "<difficult>1"))
    before = tree_digest(out)
    with pytest.raises(FileExistsError, match=rf"changed since \(test/{fixed.name}\)"):
        write_split(split_annotations(anns, 0.3, seed=1), out, overwrite=True)
    assert tree_digest(out) == before
    # unchanged copies of mask_od's split are replaced; a file browser's .DS_Store stays
    write_split(split_annotations(anns, 0.3, seed=0), tmp_path / "again")
    fixed.write_bytes((tmp_path / "again" / "test" / fixed.name).read_bytes())
    (out / "train" / ".DS_Store").write_bytes(b"x")
    second = split_annotations(anns, 0.3, seed=1)
    write_split(second, out, overwrite=True)
    assert (out / "train" / ".DS_Store").read_bytes() == b"x"
    assert {p.name for p in (out / "test").iterdir()} == {n for a in second.test for n in (a.image_path.name, a.xml_path.name)}
    assert (out / MANIFEST).is_file()


# --- 5. no output lands on an input, whatever --overwrite says ----------------------------------------------------------
def test_5_detect_live_output_video_onto_its_source_video(tmp_path):
    from mask_od.synthetic import make_synthetic_video

    user = tmp_path / "user"
    clip = make_synthetic_video(user / "clip.mp4", num_frames=6, size=(160, 96))
    before = tree_digest(user)
    p = run_script("detect_live.py", "--source", clip, "--output_video", clip, "--overwrite", "--display", "none")
    one_error_line(p, f"output video {clip} is the source {clip}", "with or without --overwrite")
    assert tree_digest(user) == before


class _FakeModel:
    label_map = {1: "with_mask"}

    def __init__(self, path):
        self.path = path

    def predict(self, rgb):
        from mask_od.detections import Detections

        return Detections.from_arrays([[0.1, 0.1, 0.5, 0.5]], [1], [0.9], self.label_map)


def test_5_other_outputs_that_would_land_on_live_inputs(tmp_path):
    import os

    import numpy as np

    from mask_od.errors import MaskODError
    from mask_od.live import run_live
    from mask_od.synthetic import make_synthetic_video

    user = tmp_path / "user"
    clip = make_synthetic_video(user / "videos" / "clip.mp4", num_frames=4, size=(160, 96))
    frames = user / "frames"
    frames.mkdir()
    write_jpeg(frames / "0.jpg")
    model = user / "model.tflite"
    model.write_bytes(b"not really a model")
    os.symlink(clip, user / "link.mp4")
    other = user / "somefolder"
    other.mkdir()
    write_jpeg(other / "keep.jpg")
    before = tree_digest(user)
    cases = [
        (frames, dict(output_video=frames), "is the source"),  # the image folder
        (clip, dict(output_video=user / "videos"), "is a folder holding the source"),
        (clip, dict(log_path=clip), "is the source"),
        (clip, dict(output_video=user / "link.mp4"), "is the source"),  # a symlink to it
        (clip, dict(output_video=model), "is the model"),
        (clip, dict(output_video=tmp_path / "o.mp4", log_path=tmp_path / "o.mp4"), "are the same path"),
        (clip, dict(output_video=other), "is a folder"),  # an unrelated folder is never replaced by a video
        (frames, dict(output_video=frames / "0.jpg"), "lies inside the source"),  # a picture of the folder being read
        (frames, dict(output_video=tmp_path / "o.mp4", log_path=frames / "new.jpg"), "lies inside the source"),
    ]
    for source, outs, words in cases:
        with pytest.raises(MaskODError, match=re.escape(words)):
            run_live(_FakeModel(model), source, display="none", overwrite=True, **outs)
        assert tree_digest(user) == before, (source, outs)
    s = run_live(_FakeModel(model), frames, display="none", output_video=tmp_path / "ok.mp4")  # and a fine one runs
    assert s.frames == 1 and np.isfinite(s.fps)


def test_5_records_csv_export_and_evaluation_outputs_onto_inputs(tiny_voc, tiny_records, tmp_path):
    from mask_od.errors import MaskODError
    from mask_od.tfrecord import convert_voc_dir

    data = Path(tiny_voc.xml_dir).parent
    before = tree_digest(data)
    lm = tiny_voc.label_map_path
    xml = sorted(Path(tiny_voc.xml_dir).glob("*.xml"))[0]
    img = sorted(Path(tiny_voc.image_dir).glob("*.jpg"))[0]
    for kw, words in [(dict(output_path=lm), "is the label map"), (dict(output_path=xml), "is the annotation"),
                      (dict(output_path=img), "is the image"), (dict(output_path=tmp_path / "r", csv_path=lm), "is the label map"),
                      (dict(output_path=tmp_path / "r", csv_path=tmp_path / "r"), "are the same path"),
                      (dict(output_path=tiny_voc.xml_dir), "is the folder")]:
        with pytest.raises(MaskODError, match=re.escape(words)):
            convert_voc_dir(tiny_voc.xml_dir, kw.pop("label_map", lm), image_dir=tiny_voc.image_dir, overwrite=True,
                            progress=False, **kw)
        assert tree_digest(data) == before, kw
    # evaluation output folder onto its records; scripts give one error line
    p = run_script("generate_tfrecord.py", "-x", tiny_voc.xml_dir, "-l", lm, "-o", lm, "--overwrite")
    one_error_line(p, f"is the label map {lm}")
    rec = Path(tiny_records["val_records"])
    recs_before = tree_digest(rec.parent)
    p = run_script("evaluate.py", "--model", "models/face_mask/model_int8.tflite", "--records", rec, "--out_dir", rec)
    one_error_line(p, f"--out_dir {rec} is the --records {rec}")
    assert tree_digest(rec.parent) == recs_before


def test_5_training_output_dir_onto_its_pretrained_folder(tiny_records, tmp_path):
    from mask_od.errors import MaskODError
    from mask_od.train import train

    pre = tmp_path / "my_model"
    pre.mkdir()
    (pre / "config.yaml").write_text("image_size: 320\n")
    (pre / "label_map.pbtxt").write_text("item { id: 1 name: 'a' }\n")
    before = tree_digest(pre)
    cfg = tiny_config(tiny_records, pre, pretrained=str(pre), steps=1)
    with pytest.raises(MaskODError, match=re.escape(f"output_dir {pre} is the pretrained {pre}")):
        train(cfg, progress=False)
    assert tree_digest(pre) == before


# --- 7. every stage says what it skipped, in one line with a count ------------------------------------------------------
def test_7_live_folder_names_what_it_skipped_and_frames_at_the_detection_cap(tmp_path, capsys):
    from mask_od.live import run_live

    frames = tmp_path / "frames"
    (frames / "more").mkdir(parents=True)
    for name in ("a.jpg", "b.PNG"):
        write_jpeg(frames / name)
    (frames / "notes.txt").write_text("x")
    (frames / "clip.gif").write_bytes(b"GIF89a")
    model = _FakeModel(tmp_path / "m.tflite")
    s = run_live(model, frames, display="none")
    line = next(x for x in capsys.readouterr().out.splitlines() if "skipped" in x)
    assert f"{frames}: skipped 3 file(s) or folder(s)" in line and "clip.gif, more, notes.txt" in line
    assert s.frames == 2 and "reached max_detections" not in s.message
    model.max_detections = 1  # one box per frame: every frame is at the cap
    s = run_live(model, frames, display="none")
    assert "2 frames reached max_detections (1)" in str(s)


def test_7_split_copies_a_same_named_file_once_and_says_so_and_refuses_other_bytes(tmp_path, capsys):
    from mask_od.annotations import parse_voc_dir
    from mask_od.split import split_annotations, write_split
    from mask_od.synthetic import make_synthetic_dataset

    d = make_synthetic_dataset(tmp_path / "d", num_images=6, size=96, seed=3)
    twin = tmp_path / "twin"
    shutil.copytree(d.xml_dir, twin)
    anns = parse_voc_dir(d.xml_dir) + parse_voc_dir(twin, d.image_dir)
    sp = split_annotations(anns, 0.3, seed=0)
    write_split(sp, tmp_path / "out")
    assert "file(s) not copied again: a file of the same name and bytes" in capsys.readouterr().out
    # same name and size, other bytes (a box moved by one digit): the second is never dropped quietly
    xml = sorted(twin.glob("*.xml"))[0]
    text = xml.read_text()
    i = text.index("<xmin>") + len("<xmin>")
    xml.write_text(text[:i] + str((int(text[i]) + 1) % 10) + text[i + 1 :])
    anns = parse_voc_dir(d.xml_dir) + parse_voc_dir(twin, d.image_dir)
    with pytest.raises(FileExistsError, match=rf"{re.escape(str(xml))}.* with other bytes .*nothing was written"):
        write_split(split_annotations(anns, 0.3, seed=0), tmp_path / "out2")
    assert not (tmp_path / "out2").exists()  # refused before the first copy (it stopped halfway before)
    name = sorted(Path(d.xml_dir).glob("*.xml"))[0].name
    for part in ("train", "test"):  # a folder where a file goes (in whichever part it falls)
        (tmp_path / "out3" / part / name).mkdir(parents=True)
    from mask_od.fileio import OutputPathError

    with pytest.raises(OutputPathError, match=r"is a folder where the split writes a file.*nothing was written"):
        write_split(split_annotations(parse_voc_dir(d.xml_dir), 0.3, seed=0), tmp_path / "out3")
    assert sorted(p.name for p in (tmp_path / "out3").rglob("*")) == sorted(["train", "test", name, name])


def test_7_records_without_class_text_and_classes_without_ground_truth_are_named(tiny_records, tmp_path, capsys):
    import tensorflow as tf

    from mask_od.evaluate import format_metrics
    from mask_od.input_pipeline import check_record_labels
    from mask_od.label_map import read_label_map

    out = tmp_path / "notext.record"
    with tf.io.TFRecordWriter(str(out)) as w:
        for raw in tf.data.TFRecordDataset(tiny_records["four"]):
            ex = tf.train.Example.FromString(raw.numpy())
            del ex.features.feature["image/object/class/text"]
            w.write(ex.SerializeToString())
    n = check_record_labels(str(out), read_label_map(tiny_records["label_map"]))
    assert n > 0 and f"{out}: {n} box(es) carry no class text" in capsys.readouterr().out
    m = {k: 0.5 for k in ("mAP", "mAP50", "mAP75", "AR100")}
    m["per_class"] = {"with_mask": {"AP50": 0.7}, "mask_weared_incorrect": {"AP50": None}}
    assert "1 class(es) not scored, no ground truth box in these images: mask_weared_incorrect" in format_metrics(m)


def test_5_monitor_outputs_onto_its_sources_are_refused_before_it_starts(tmp_path):
    """scripts/serve.py's event log onto its source video, its recording folder holding the source (source0.mp4), or
    a recording inside an image-folder source: refused by validate_config, whatever --overwrite says."""
    from mask_od.errors import MaskODError
    from mask_od.monitor import ServeConfig
    from mask_od.serve import validate_config
    from mask_od.synthetic import make_synthetic_video

    user = tmp_path / "user"
    clip = make_synthetic_video(user / "clip.mp4", num_frames=4, size=(160, 96))
    rec = user / "rec"
    own = make_synthetic_video(rec / "source0.mp4", num_frames=4, size=(160, 96))
    frames = user / "frames"
    frames.mkdir()
    write_jpeg(frames / "0.jpg")
    before = tree_digest(user)
    for cfg, words in ((ServeConfig(sources=[str(clip)], event_log=str(clip), overwrite=True), "is the source"),
                       (ServeConfig(sources=[str(own)], record_dir=str(rec), overwrite=True), "is the source"),
                       (ServeConfig(sources=[str(frames)], record_dir=str(frames), overwrite=True), "lies inside the source")):
        with pytest.raises(MaskODError, match=re.escape(words)):
            validate_config(cfg)
    assert tree_digest(user) == before
    validate_config(ServeConfig(sources=[str(clip)], event_log=str(tmp_path / "events.jsonl")))  # a fine one passes


def test_export_and_package_refuse_an_input_size_no_model_takes_before_any_work(trained_run, tmp_path):
    """A size that is not a multiple of 32 (333) crashed inside Keras after the model was built ("incompatible shapes
    (22, 22, 128) and (21, 21, 128)"), and 0 was packaged into manifest.json; both are now refused as training refuses
    them, before anything is written. Numbers of images and threads below 1 are refused by the scripts' arguments."""
    from mask_od.errors import MaskODError
    from mask_od.export import export_model
    from mask_od.package import package_model

    _, cfg = trained_run
    for size in (333, 0, 32):
        with pytest.raises(MaskODError, match=f"image_size must be a multiple of 32 >= 64, got {size}"):
            export_model(cfg.output_dir, tmp_path / "export", image_size=size)
        with pytest.raises(MaskODError, match=f"image_size must be a multiple of 32 >= 64, got {size}"):
            package_model(cfg.output_dir, tmp_path / "package", image_size=[320, size])
    with pytest.raises(MaskODError, match="image_size must be a multiple of 32"):  # said first, whatever the run folder
        package_model(tmp_path / "no_run", tmp_path / "package", image_size=333)
    assert not any(tmp_path.iterdir())
    import importlib.util

    from conftest import ROOT

    for script, args in (("evaluate", ["--model", str(cfg.output_dir), "--limit", "0"]),
                         ("evaluate", ["--model", str(cfg.output_dir), "--num_threads", "-3"]),
                         ("capture_images", ["--num_images", "-1", "--out_dir", str(tmp_path / "cap")])):
        spec = importlib.util.spec_from_file_location(f"script_{script}", ROOT / "scripts" / f"{script}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        with pytest.raises(SystemExit) as e:  # argparse: usage and "argument --limit: 0 is less than 1", exit 2
            module.main(args)
        assert e.value.code == 2, (script, args)
    assert not any(tmp_path.iterdir())
    p = run_script("export.py", "--run_dir", cfg.output_dir, "--out_dir", tmp_path / "export", "--image_size", "333")
    one_error_line(p, "image_size must be a multiple of 32 >= 64, got 333")
    assert not any(tmp_path.iterdir())


def test_export_script_takes_another_input_size(trained_run, tmp_path):
    """`export.py --image_size`: the library could export at another size, the script could not."""
    import json

    _, cfg = trained_run
    size = cfg.image_size + 32
    p = run_script("export.py", "--run_dir", cfg.output_dir, "--out_dir", tmp_path / "export", "--tflite", "--image_size", size)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert json.loads((tmp_path / "export" / "export_report.json").read_text())["image_size"] == size


def test_a_tflite_file_alone_says_where_its_label_map_goes(exported, tmp_path):
    from mask_od.detect import Detector, ModelError

    export_dir, _, _ = exported
    alone = tmp_path / "model.tflite"
    shutil.copy(Path(export_dir) / "model_float32.tflite", alone)
    with pytest.raises(ModelError, match=re.escape(f"{alone}: no label_map.pbtxt beside the model: copy the label_map.pbtxt")):
        Detector(alone)
    shutil.copy(Path(export_dir) / "label_map.pbtxt", tmp_path / "label_map.pbtxt")
    assert Detector(alone).label_map  # once it is there


def test_an_output_folder_that_is_a_file_and_a_bare_key_are_named_before_any_work(tiny_voc, tmp_path):
    """`capture_images.py --out_dir FILE` gave a raw `[Errno 20] Not a directory`, `partition_dataset.py -o FILE` the
    path twice, `train.py steps` "config file not found" alone: each now says what is wrong, and the file is kept."""
    from mask_od.capture import capture_images
    from mask_od.fileio import OutputPathError

    blocker = tmp_path / "collected"
    blocker.write_text("a note, not a folder")
    with pytest.raises(OutputPathError, match=r"collected is a file, not a folder"):
        capture_images(["with_mask"], 1, 0, source=str(tmp_path / "no_camera.mp4"), out_dir=blocker)  # before the source opens
    with pytest.raises(OutputPathError, match=r"collected is a file, not a folder"):
        capture_images(["with_mask"], 1, 0, source=str(tmp_path / "no_camera.mp4"), out_dir=blocker / "inside")
    p = run_script("partition_dataset.py", "-i", tiny_voc.image_dir, "--xml_dir", tiny_voc.xml_dir, "-o", blocker, "-r", "0.25")
    assert one_error_line(p, f"{blocker} is a file, not a folder").count(str(blocker)) == 1
    split_out = tmp_path / "split"  # a file where the split's train/ folder goes: refused before train.txt is written
    split_out.mkdir()
    (split_out / "train").write_text("not a folder")
    p = run_script("partition_dataset.py", "-i", tiny_voc.image_dir, "--xml_dir", tiny_voc.xml_dir, "-o", split_out, "-r", "0.25")
    one_error_line(p, f"{split_out / 'train'} is a file, not a folder")
    assert sorted(x.name for x in split_out.iterdir()) == ["train"]
    cap = tmp_path / "cap"  # the same for a label's folder; and a source that cannot be opened leaves no folder behind
    cap.mkdir()
    (cap / "without_mask").write_text("not a folder")
    with pytest.raises(OutputPathError, match=r"without_mask is a file, not a folder"):
        capture_images(["with_mask", "without_mask"], 1, 0, source=str(tmp_path / "no_camera.mp4"), out_dir=cap)
    from mask_od.errors import MaskODError

    with pytest.raises(MaskODError, match="no_camera.mp4"):
        capture_images(["with_mask"], 1, 0, source=str(tmp_path / "no_camera.mp4"), out_dir=tmp_path / "new" / "photos")
    assert not (tmp_path / "new").exists() and sorted(x.name for x in cap.iterdir()) == ["without_mask"]
    from mask_od.capture import LabelError, check_labels

    for bad in ("", " ", "a/b", "..", "with_mask "):  # a hidden file, a nested folder, the folder above
        with pytest.raises(LabelError, match="a class name is a folder name here"):
            capture_images(["with_mask", bad], 1, 0, source=str(tmp_path / "no_camera.mp4"), out_dir=tmp_path / "new")
    assert check_labels(["a", "b", "a"]) == ["a", "b"] and not (tmp_path / "new").exists()
    p = run_script("train.py", "steps")
    one_error_line(p, "steps: config file not found (to set the key 'steps', write steps=VALUE)")
    assert blocker.read_text() == "a note, not a folder"
