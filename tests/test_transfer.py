"""Packaged models and detection-level transfer: packaging a run, loading it whole or with a new class layer, the sha256
check refusing a damaged file, refusing a model made for other anchors, and the shipped face-mask model itself."""

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def packaged(trained_run, tiny_records):
    from mask_od.package import package_model

    _, cfg = trained_run
    out = tiny_records["root"] / "packaged"
    manifest = package_model(cfg.output_dir, out, tflite=False, card="# tiny\n")
    return out, manifest, cfg


def _file_values(folder: Path) -> dict[str, np.ndarray]:
    """Every model variable stored in a packaged checkpoint, by checkpoint key (an obviously correct reference)."""
    import tensorflow as tf

    prefix = str(folder / "checkpoint" / "model")
    return {k: tf.train.load_variable(prefix, k) for k, _ in tf.train.list_variables(prefix) if k.startswith("model/")}


def _model(cfg, label_map):
    from mask_od.label_map import num_classes
    from mask_od.model import build_model

    return build_model(cfg, num_classes(label_map), load_pretrained=False)


def test_package_writes_model_only_checkpoint_and_card_with_sums(packaged):
    out, manifest, cfg = packaged
    from mask_od.shipped import sha256_file, verify

    assert set(manifest["files"]) == {"checkpoint/model.index", "checkpoint/model.data-00000-of-00001", "label_map.pbtxt", "config.yaml"}
    assert verify(out) == json.loads((out / "manifest.json").read_text())
    card = (out / "README.md").read_text()
    for rel in manifest["files"]:
        assert sha256_file(out / rel) in card
    import tensorflow as tf

    keys = [k for k, _ in tf.train.list_variables(str(out / "checkpoint" / "model"))]
    assert not any("optimizer" in k for k in keys), "optimizer slots must not be shipped"
    assert manifest["anchor_size"] == cfg.anchor_size and manifest["backbone"] == cfg.backbone


def test_same_classes_load_every_weight(packaged):
    from mask_od.label_map import read_label_map
    from mask_od.runs import load_trained_model
    from mask_od.transfer import init_from_packaged

    out, _, cfg = packaged
    lm = read_label_map(cfg.label_map)
    config = dataclasses.replace(cfg, pretrained=str(out))
    model = _model(config, lm)
    line = init_from_packaged(model, config, lm)
    assert "whole detector" in line
    trained, _, _ = load_trained_model(cfg.output_dir)  # the run's own checkpoint, restored by the object graph
    assert len(trained.weights) == len(model.weights) == len(_file_values(out))
    for a, b in zip(trained.weights, model.weights):  # the package stores float16: the run's weights rounded to it
        np.testing.assert_array_equal(a.numpy().astype(np.float16).astype(np.float32), b.numpy(), err_msg=b.name)


def test_other_classes_reinitialise_only_the_class_layer(packaged, tmp_path):
    from mask_od.label_map import read_label_map, write_label_map
    from mask_od.transfer import class_layer, init_from_packaged

    out, _, cfg = packaged
    source_lm = read_label_map(cfg.label_map)
    reference = _model(dataclasses.replace(cfg, pretrained=str(out)), source_lm)
    init_from_packaged(reference, dataclasses.replace(cfg, pretrained=str(out)), source_lm)
    for lm in ({1: "helmet", 2: "no_helmet"}, {1: "mask", 2: "no_mask", 3: "bad_mask"}):
        path = write_label_map(lm, tmp_path / f"lm{len(lm)}.pbtxt")
        config = dataclasses.replace(cfg, pretrained=str(out), label_map=str(path))
        model = _model(config, lm)
        fresh = [w.numpy().copy() for w in class_layer(model)]
        line = init_from_packaged(model, config, lm)
        assert "class layer re-initialised" in line and lm[1] in line
        skip = {w.ref() for w in class_layer(model)}
        for ref_w, w in zip(reference.weights, model.weights):
            if w.ref() in skip:
                continue
            np.testing.assert_array_equal(ref_w.numpy(), w.numpy(), err_msg=w.name)
        for before, w in zip(fresh, class_layer(model)):
            np.testing.assert_array_equal(before, w.numpy())  # left at its fresh initialisation
        # the class layer differs from the file's (same shape for 3 classes, yet not loaded)
        assert not all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(class_layer(reference), class_layer(model))
                       if a.shape == b.shape)


def test_class_layer_is_mapped_by_name(packaged, tmp_path):
    """Classes the packaged model knows keep their outputs whatever their id, order or subset; only new names are
    fresh (issue 23: the two classes step 1 captures lost what the shipped model knew of them)."""
    import tensorflow as tf

    from mask_od.label_map import read_label_map, write_label_map
    from mask_od.transfer import class_layer, init_from_packaged

    out, _, cfg = packaged
    source_lm = read_label_map(cfg.label_map)  # with_mask, without_mask, mask_weared_incorrect
    ids = {n: i for i, n in source_lm.items()}
    prefix = str(out / "checkpoint" / "model")
    file_vars = {k: tf.train.load_variable(prefix, k) for k, _ in tf.train.list_variables(prefix)}
    lm = {1: "without_mask", 2: "helmet", 4: "with_mask"}  # another order, other ids, one new name, one class left out
    path = write_label_map(lm, tmp_path / "lm.pbtxt")
    config = dataclasses.replace(cfg, pretrained=str(out), label_map=str(path))
    model = _model(config, lm)
    anchors = model.head.get_config()["num_anchors_per_location"]
    fresh = {w.name: w.numpy().copy() for w in class_layer(model)}
    line = init_from_packaged(model, config, lm)
    assert "kept without_mask, with_mask" in line and "new (fresh rows) helmet" in line, line
    checked = 0
    for w in class_layer(model):
        if w.shape[-1] != anchors * 5:
            continue  # the depthwise kernel: class-independent, loaded whole like the rest
        kind = "bias" if len(w.shape) == 1 else "pointwise_kernel"
        src = file_vars[f"model/_head/_classifier/{kind}/.ATTRIBUTES/VARIABLE_VALUE"]
        got = w.numpy().reshape(*w.shape[:-1], anchors, 5)
        want = src.reshape(*src.shape[:-1], anchors, 4)
        before = fresh[w.name].reshape(got.shape)
        for t, s in ((0, 0), (1, ids["without_mask"]), (4, ids["with_mask"])):
            np.testing.assert_array_equal(got[..., t], want[..., s], err_msg=f"{w.name} class {t}")
        for t in (2, 3):  # helmet (new) and the unused id 3: left fresh
            np.testing.assert_array_equal(got[..., t], before[..., t], err_msg=f"{w.name} class {t}")
        checked += 1
    assert checked == 2  # pointwise kernel and bias


def test_damaged_file_is_refused_and_nothing_written(packaged, tmp_path):
    from mask_od.shipped import ShippedModelError
    from mask_od.train import train

    out, _, cfg = packaged
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    data = bad / "checkpoint" / "model.data-00000-of-00001"
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    run = tmp_path / "run"
    with pytest.raises(ShippedModelError, match=r"model.data-00000-of-00001: damaged: sha256"):
        train(dataclasses.replace(cfg, pretrained=str(bad), output_dir=str(run)), progress=False)
    assert not run.exists()


def test_other_anchor_size_or_backbone_is_refused(packaged):
    from mask_od.shipped import ShippedModelError
    from mask_od.transfer import check_packaged

    out, _, cfg = packaged
    with pytest.raises(ShippedModelError, match=r"anchor_size 2.0 \(this config: 4.0\)"):
        check_packaged(dataclasses.replace(cfg, pretrained=str(out), anchor_size=4.0))
    with pytest.raises(ShippedModelError, match="backbone 'mobilenet_v2_fpnlite'"):
        check_packaged(dataclasses.replace(cfg, pretrained=str(out), backbone="resnet50_fpn"))
    with pytest.raises(ShippedModelError, match=r"anchor_aspect_ratios '0.5,1.0,2.0' \(this config: '0.7,0.9,1.2'\)"):
        check_packaged(cfg.replace(pretrained=str(out), anchor_aspect_ratios="0.7, 0.9, 1.2"))


def test_other_anchor_aspect_ratios_are_refused_everywhere(packaged, tmp_path):
    """Other anchor aspect ratios give the same tensor shapes (3 ratios x 3 scales), so the weights would load and
    decode boxes against the wrong anchors: refused for a packaged model whose manifest predates the key (the zoo's
    ratios), for init_checkpoint from a package or run, and when packaging a size run made with other ratios."""
    import json

    from mask_od.package import check_size_runs
    from mask_od.shipped import MANIFEST, ShippedModelError
    from mask_od.train import TrainingError, train

    out, _, cfg = packaged
    assert json.loads((out / MANIFEST).read_text())["anchor_aspect_ratios"] == "0.5,1.0,2.0"
    old = tmp_path / "old_pkg"  # a package made before the key existed: the manifest lacks it
    shutil.copytree(out, old)
    manifest = json.loads((old / MANIFEST).read_text())
    del manifest["anchor_aspect_ratios"]
    (old / MANIFEST).write_text(json.dumps(manifest))
    from mask_od.transfer import check_packaged

    assert check_packaged(cfg.replace(pretrained=str(old)))["anchor_size"] == cfg.anchor_size
    with pytest.raises(ShippedModelError, match=r"anchor_aspect_ratios '0.5,1.0,2.0' \(this config: '0.75,1.0'\)"):
        check_packaged(cfg.replace(pretrained=str(old), anchor_aspect_ratios="0.75,1"))
    run = tmp_path / "run"
    for init in (out, out / "checkpoint" / "model"):
        with pytest.raises(TrainingError, match=r"init_checkpoint was trained with anchor_aspect_ratios '0.5,1.0,2.0' "
                                                r"\(this config: '0.7,0.9,1.2'\)"):
            train(cfg.replace(init_checkpoint=str(init), anchor_aspect_ratios="0.7,0.9,1.2", output_dir=str(run)), progress=False)
    assert not run.exists()
    with pytest.raises(ShippedModelError, match=r"anchor_aspect_ratios '0.7,0.9,1.2' \(the main run's: '0.5,1.0,2.0'\)"):
        check_size_runs(Path(cfg.output_dir), [128, 160], {128: _size_run(cfg.output_dir, tmp_path / "r", anchor_aspect_ratios="0.7,0.9,1.2")})


def test_training_from_packaged_model_prints_one_line(packaged, tiny_records, tmp_path, capsys):
    from mask_od.train import train

    out, _, _ = packaged
    cfg = tiny_config(tiny_records, tmp_path / "ft", pretrained=str(out), steps=2, eval_every=0, val_records="")
    train(cfg, progress=False)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "initialised" in ln]
    assert len(lines) == 1 and "whole detector" in lines[0]


def test_shipped_face_mask_model_is_intact_and_fits_the_defaults():
    from mask_od.config import build_config
    from mask_od.shipped import MODELS_DIR, verify
    from mask_od.transfer import check_packaged

    folder = MODELS_DIR / "face_mask"
    manifest = verify(folder)  # every shipped file against its sha256
    assert {"model_float32.tflite", "model_int8.tflite", "model_640_float32.tflite", "model_640_int8.tflite",
            "label_map.pbtxt", "config.yaml"} <= set(manifest["files"])
    assert manifest["tflite_files"] == {"320": {"float32": "model_float32.tflite", "int8": "model_int8.tflite"},
                                        "640": {"float32": "model_640_float32.tflite", "int8": "model_640_int8.tflite"}}
    assert sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) < 45e6  # four TFLite files, float16 checkpoint: 42.3 MB
    card = (folder / "README.md").read_text()
    assert all(d in card for d in manifest["files"].values())
    config = build_config()
    assert config.pretrained == "face_mask"
    check_packaged(config)


def test_live_script_without_model_uses_the_shipped_model(tmp_path):
    from mask_od.synthetic import make_synthetic_video

    video = make_synthetic_video(tmp_path / "v.mp4", num_frames=6)
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "detect_live.py"), "--source", str(video), "--display", "none",
                        "--output_video", str(tmp_path / "out.mp4")], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "models/face_mask/model_int8.tflite" in r.stdout and "FPS" in r.stdout
    assert (tmp_path / "out.mp4").stat().st_size > 0


def test_size_is_picked_in_one_word(tmp_path):
    """320 or 640: the shipped TFLite file of that input size (what --size and the notebook's SHIPPED_SIZE pick); a
    size it does not have is refused with the sizes it has."""
    from mask_od.detect import Detector
    from mask_od.shipped import ShippedModelError, default_live_model, shipped_tflite
    from mask_od.synthetic import make_synthetic_video

    for size in (320, 640):
        for variant in ("int8", "float32"):
            path = shipped_tflite(size, variant)
            assert path.is_file() and Detector(path).input_size == size, path
    assert default_live_model(640).name == "model_640_int8.tflite" and default_live_model().name == "model_int8.tflite"
    with pytest.raises(ShippedModelError, match="no int8 TFLite file at 512 px; it has 320 .float32/int8., 640"):
        shipped_tflite(512)
    video = make_synthetic_video(tmp_path / "v.mp4", num_frames=3)
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "detect_live.py"), "--source", str(video), "--display", "none",
                        "--size", "640"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0 and "model_640_int8.tflite (the shipped face-mask model at 640 px" in r.stdout, r.stdout + r.stderr
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "detect_live.py"), "--size", "512"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "invalid choice: 512" in r.stderr


@pytest.mark.slow
def test_package_at_two_sizes_names_checks_and_lists_each(trained_run, tmp_path, monkeypatch):
    from mask_od.detect import Detector
    from mask_od.package import package_model
    from mask_od.shipped import shipped_tflite, verify

    _, cfg = trained_run
    out = tmp_path / "pkg"
    # the check runs and is reported, but its verdict is not this test's: the 100-step tiny model's int8 file sometimes
    # fails it on 4 val images (scores of a barely trained model); the verdict is tested in test_parity
    import mask_od.export as export

    monkeypatch.setattr(export, "parity_failures", lambda *a, **k: [])
    manifest = package_model(cfg.output_dir, out, image_size=(128, 160), check_records=cfg.val_records, num_check=8, card="# two sizes\n")
    assert manifest["tflite_files"] == {"128": {"float32": "model_float32.tflite", "int8": "model_int8.tflite"},
                                        "160": {"float32": "model_160_float32.tflite", "int8": "model_160_int8.tflite"}}
    verify(out)
    for size, names in manifest["tflite_files"].items():
        for variant, name in names.items():
            assert shipped_tflite(int(size), variant, str(out)) == out / name
            assert Detector(out / name).input_size == int(size)
    assert json.loads((out / "export_report_160.json").read_text())["image_size"] == 160
    assert json.loads((out / "export_report.json").read_text())["image_size"] == 128
    card = (out / "README.md").read_text()
    assert all(f"| `{name}` |" in card for names in manifest["tflite_files"].values() for name in names.values())
    assert "## TFLite files at 128 px" in card and "## TFLite files at 160 px" in card and "| model_160_int8.tflite |" in card
    from mask_od.package import model_card, read_reports

    reports = read_reports(out)
    assert sorted(reports) == [128, 160]
    check = {"images": 4, "saved_model": {"mAP50": 0.5, "AP50_per_class": {}}, "int8": {"mAP50": 0.25, "AP50_per_class": {}}}
    text = model_card(manifest, "# x", {128: {"check": check}, 160: {"check": check}})
    assert "## TFLite files at 128 px" in text and "## TFLite files at 160 px" in text and "| model_160_int8.tflite | 0.250 |" in text


def test_damaged_shipped_tflite_is_refused_by_the_detector(tmp_path):
    from mask_od.detect import Detector
    from mask_od.shipped import MODELS_DIR, ShippedModelError

    copy = tmp_path / "face_mask"
    shutil.copytree(MODELS_DIR / "face_mask", copy)
    Detector(copy / "model_int8.tflite")  # intact: loads
    tfl = copy / "model_int8.tflite"
    raw = bytearray(tfl.read_bytes())
    raw[-100] ^= 0x01
    tfl.write_bytes(bytes(raw))
    with pytest.raises(ShippedModelError, match="model_int8.tflite: damaged"):
        Detector(tfl)
    # the class names come from the label map beside it: a renamed class is refused too (fresh-user finding)
    lm = copy / "label_map.pbtxt"
    lm.write_text(lm.read_text().replace("mask_weared_incorrect", "mask_worn_wrong"))
    with pytest.raises(ShippedModelError, match="label_map.pbtxt: damaged"):
        Detector(copy / "model_float32.tflite")


def test_package_refuses_to_replace_a_folder_that_is_not_a_package(trained_run, tmp_path):
    from mask_od.package import package_model
    from mask_od.shipped import ShippedModelError

    _, cfg = trained_run
    keep = tmp_path / "photos"
    keep.mkdir()
    (keep / "a.jpg").write_bytes(b"mine")
    with pytest.raises(ShippedModelError, match="not a packaged model"):
        package_model(cfg.output_dir, keep, tflite=False, overwrite=True)
    with pytest.raises(FileExistsError):
        package_model(cfg.output_dir, keep, tflite=False)
    assert (keep / "a.jpg").read_bytes() == b"mine" and len(list(keep.iterdir())) == 1


def test_package_script(trained_run, tmp_path):
    _, cfg = trained_run
    script = str(ROOT / "scripts" / "package_model.py")
    out = tmp_path / "pkg"
    r = subprocess.run([sys.executable, script, cfg.output_dir, str(out), "--no_tflite"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    manifest = (out / "manifest.json").read_text()
    assert json.loads(manifest)["steps"] == cfg.steps
    (tmp_path / "card.md").write_text("# my model\nmeasured: 0.123\n")
    r = subprocess.run([sys.executable, script, cfg.output_dir, str(out), "--update_card", "--card", str(tmp_path / "card.md")],
                       capture_output=True, text=True, timeout=600)
    card = (out / "README.md").read_text()
    assert r.returncode == 0 and card.startswith("# my model\nmeasured: 0.123") and json.loads(manifest)["files"]["config.yaml"] in card
    assert (out / "manifest.json").read_text() == manifest
    r = subprocess.run([sys.executable, script, str(tmp_path / "nothing"), str(tmp_path / "pkg2")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and "error:" in r.stderr and "nothing: no such folder; pass a run folder" in r.stderr and "error" not in r.stdout


@pytest.mark.slow
def test_model_card_counts_the_steps_of_the_packaged_best_weights(trained_run, tmp_path):
    """Issue 26.6: the card's step count came from the latest checkpoint while the weights come from best/."""
    import tensorflow as tf

    from mask_od.package import package_model

    _, cfg = trained_run
    run = tmp_path / "run"
    shutil.copytree(cfg.output_dir, run)
    best = int(json.loads((run / "best" / "best.json").read_text())["step"])
    # a later checkpoint (training went on after the best evaluation): only its step counter matters here
    tf.train.CheckpointManager(tf.train.Checkpoint(step=tf.Variable(best + 50, dtype=tf.int64)), str(run / "checkpoints"),
                               max_to_keep=10).save(checkpoint_number=best + 50)
    manifest = package_model(run, tmp_path / "pkg", tflite=False, card="# tiny\n")
    assert manifest["steps"] == best
    assert f"{best:,} steps" in (tmp_path / "pkg" / "README.md").read_text()


def test_packaged_checkpoint_is_float16_and_every_reader_restores_it(packaged, tmp_path):
    """Issue 24: the packaged checkpoint is stored as float16 (half the bytes); transfer (``pretrained: <folder>``) and
    ``init_checkpoint: <folder>/checkpoint/model`` restore it into the float32 model, equal to the run's weights
    rounded to float16; a package of before (float32 checkpoint) still loads exactly."""
    import tensorflow as tf

    from mask_od.label_map import read_label_map
    from mask_od.runs import load_trained_model, restore_weights
    from mask_od.shipped import CHECKPOINT, read_manifest, verify, write_manifest
    from mask_od.transfer import init_from_packaged

    out, manifest, cfg = packaged
    dtypes = tf.train.load_checkpoint(str(out / CHECKPOINT)).get_variable_to_dtype_map()
    assert "_CHECKPOINTABLE_OBJECT_GRAPH" in dtypes and manifest["checkpoint_dtype"] == "float16"
    floats = {k: d for k, d in dtypes.items() if d.is_floating}
    assert len(floats) == len(_file_values(out)) and set(floats.values()) == {tf.float16}
    trained, _, _ = load_trained_model(cfg.output_dir)
    float32 = tf.train.Checkpoint(model=trained).write(str(tmp_path / "f32" / "model"))  # what packages held before
    data = "checkpoint/model.data-00000-of-00001"
    assert manifest["sizes"][data] < 0.55 * Path(float32 + ".data-00000-of-00001").stat().st_size
    lm = read_label_map(cfg.label_map)
    rounded = [w.numpy().astype(np.float16).astype(np.float32) for w in trained.weights]
    via_init = _model(cfg, lm)
    restore_weights(via_init, out / CHECKPOINT)  # what train does with init_checkpoint
    for want, w in zip(rounded, via_init.weights, strict=True):
        np.testing.assert_array_equal(want, w.numpy(), err_msg=w.name)
    assert any(not np.array_equal(want, w.numpy()) for want, w in zip(rounded, trained.weights))  # rounding is seen
    old = tmp_path / "old_package"
    shutil.copytree(out, old)
    for f in (old / "checkpoint").iterdir():
        f.unlink()
    tf.train.Checkpoint(model=trained).write(str(old / CHECKPOINT))
    write_manifest(old, {k: v for k, v in read_manifest(out).items() if k not in ("files", "sizes", "checkpoint_dtype")})
    verify(old)
    for folder, want in ((out, rounded), (old, [w.numpy() for w in trained.weights])):
        config = dataclasses.replace(cfg, pretrained=str(folder))
        model = _model(config, lm)
        assert "whole detector" in init_from_packaged(model, config, lm)
        for a, w in zip(want, model.weights, strict=True):
            np.testing.assert_array_equal(a, w.numpy(), err_msg=f"{folder.name}: {w.name}")


def _size_run(run_dir, folder: Path, step: int = 777, label_map: dict | None = None, **changes) -> Path:
    """A second run directory beside ``run_dir``: its config (``changes`` applied), its label map (or ``label_map``),
    a checkpoint holding only ``step`` and a plan of 90 s: enough for packaging with a stand-in export."""
    import tensorflow as tf

    from mask_od.config import build_config
    from mask_od.label_map import write_label_map

    folder.mkdir()
    build_config(Path(run_dir) / "config.yaml").replace(**changes).save(folder / "config.yaml")
    if label_map:
        write_label_map(label_map, folder / "label_map.pbtxt")
    else:
        shutil.copyfile(Path(run_dir) / "label_map.pbtxt", folder / "label_map.pbtxt")
    tf.train.CheckpointManager(tf.train.Checkpoint(step=tf.Variable(step, dtype=tf.int64)), str(folder / "checkpoints"),
                               max_to_keep=1).save(checkpoint_number=step)
    (folder / "plan.json").write_text(json.dumps({"spent_seconds": 90}))
    return folder


def _stand_in_export(run_dir, out_dir, tflite, image_size, **_):
    """What package needs of export_model, without converting: files saying which run and size made them."""
    out_dir.mkdir(parents=True)
    for v in tflite:
        (out_dir / f"model_{v}.tflite").write_text(f"{run_dir} {image_size} {v}")
    report = {"run_dir": str(run_dir), "image_size": image_size}
    (out_dir / "export_report.json").write_text(json.dumps(report))
    return report


def test_package_takes_a_size_from_another_run(trained_run, tmp_path, monkeypatch):
    """Issue 24: the 128 px TFLite files come from a second run (a fine-tune at that size); checkpoint, config and label
    map from the main run; the manifest and the card say which run, its steps and minutes per size."""
    import mask_od.export as export
    from mask_od.package import model_card, package_model, update_card
    from mask_od.shipped import verify

    _, cfg = trained_run
    monkeypatch.setattr(export, "export_model", _stand_in_export)
    other = _size_run(cfg.output_dir, tmp_path / "run128")
    out = tmp_path / "pkg"
    manifest = package_model(cfg.output_dir, out, image_size=(128, 160), size_runs={128: other}, card="# two runs\n")
    assert manifest["tflite_runs"] == {"128": {"run_dir": str(other), "steps": 777, "training_minutes": 1.5},
                                       "160": {"run_dir": str(cfg.output_dir), "steps": manifest["steps"],
                                               "training_minutes": manifest["training_minutes"]}}
    assert json.loads((out / "export_report.json").read_text()) == {"run_dir": str(other), "image_size": 128}
    assert json.loads((out / "export_report_160.json").read_text())["run_dir"] == str(cfg.output_dir)
    assert (out / "model_int8.tflite").read_text() == f"{other} 128 int8"
    assert (out / "model_160_float32.tflite").read_text() == f"{cfg.output_dir} 160 float32"
    assert (out / "config.yaml").read_bytes() == (Path(cfg.output_dir) / "config.yaml").read_bytes()
    verify(out)
    line = f"- the 128 px TFLite files: from run `{other}`, 777 steps, 1.5 min of training"
    update_card(out, "# rewritten\n")
    card = (out / "README.md").read_text()
    assert card.startswith("# rewritten") and line in card and card.count("TFLite files: from run") == 1
    old = {k: v for k, v in manifest.items() if k not in ("tflite_runs", "run_dir")}  # a manifest of before
    assert "from run" not in model_card(old, "# old", None)


def test_size_run_that_does_not_fit_is_refused(trained_run, tmp_path, capsys):
    """Another label map, anchor size or backbone, or a size not packaged: refused naming the size run and the main
    run, before anything is written; the script says it in one error line."""
    import re

    from mask_od.package import package_model
    from mask_od.shipped import ShippedModelError

    _, cfg = trained_run
    out = tmp_path / "pkg"
    classes = _size_run(cfg.output_dir, tmp_path / "classes", label_map={1: "helmet", 2: "no_helmet"})
    with pytest.raises(ShippedModelError, match=re.escape(f"size run {classes} for 128 px does not fit the main run {cfg.output_dir}: label map")):
        package_model(cfg.output_dir, out, image_size=128, size_runs={128: classes})
    anchors = _size_run(cfg.output_dir, tmp_path / "anchors", anchor_size=4.0)
    with pytest.raises(ShippedModelError, match=r"anchors for 128 px does not fit .*anchor_size 4.0 \(the main run's: 2.0\)"):
        package_model(cfg.output_dir, out, image_size=(160, 128), size_runs={128: anchors})
    with pytest.raises(ShippedModelError, match=r"for 320 px: 320 is not one of the packaged sizes 128, 160"):
        package_model(cfg.output_dir, out, image_size=(128, 160), size_runs={320: _size_run(cfg.output_dir, tmp_path / "r320")})
    assert not out.exists()
    import importlib.util

    spec = importlib.util.spec_from_file_location("package_script", ROOT / "scripts" / "package_model.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main([cfg.output_dir, str(out), "--image_size", "128", "--size_run", f"128={classes}"]) == 2
    printed = capsys.readouterr().err
    assert printed.startswith("error: size run") and str(classes) in printed and "label map" in printed
    with pytest.raises(SystemExit):
        script.main([cfg.output_dir, str(out), "--size_run", "128"])
    assert "expected SIZE=RUN_DIR" in capsys.readouterr().err and not out.exists()
    with pytest.raises(SystemExit):  # one run per size: a second one for the same size is not silently dropped
        script.main([cfg.output_dir, str(out), "--image_size", "128", "--size_run", f"128={classes}", "--size_run", f"128={anchors}"])
    assert "names size 128 twice" in capsys.readouterr().err and not out.exists()
