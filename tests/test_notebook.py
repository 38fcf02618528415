"""Mask_detection.ipynb: thin cells, a parameters cell, and a headless run top to bottom with tiny parameters."""

import json
import re

import pytest
from conftest import ROOT, SHARED, real_photo_video

NOTEBOOK = ROOT / "Mask_detection.ipynb"


def code_cells():
    nb = json.loads(NOTEBOOK.read_text())
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def test_cells_are_thin_and_parameters_are_tagged():
    cells = code_cells()
    assert "parameters" in cells[0]["metadata"].get("tags", [])
    for i, c in enumerate(cells):
        src = "".join(c["source"])
        assert "def " not in src and "class " not in src, src[:80]
        assert len(src.splitlines()) <= (30 if i == 0 else 20)  # the parameters cell is a list of settings
    from papermill.translators import PythonTranslator

    params = dict(cells[0], source="".join(cells[0]["source"]))
    names = [line.split("=")[0].strip() for line in params["source"].splitlines() if "=" in line.split("#")[0]]
    assert [x.name for x in PythonTranslator.inspect(params)] == names  # papermill parses every parameter line


def test_notebook_is_valid_nbformat_and_every_cell_has_a_unique_id():
    """nbformat 4.5 wants an id on every cell: without one, ``make demo`` warned MissingIDFieldWarning (and nbformat
    says it will become an error)."""
    import nbformat

    nb = nbformat.reads(NOTEBOOK.read_text(encoding="utf-8"), as_version=4)
    nbformat.validate(nb)
    raw = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    ids = [c.get("id") for c in raw["cells"]]
    assert None not in ids and len(set(ids)) == len(ids), ids


@pytest.mark.slow
def test_notebook_runs_top_to_bottom(tmp_path):
    """As `make demo` runs it (scripts/run_notebook.py in a subprocess), with tiny parameters: no cell error, the
    figures inline, an export and a live video, and the cells' progress streamed to the terminal as it happens. With
    ../shared, a video of real photos stands in for the webcam: step 1 captures 2 labels x 4 frames from it, step 2
    saves the shipped model's pre-labels, and steps 3-9 train on those photos (not the demo data) and run live on it."""
    import os
    import subprocess
    import sys

    ws = tmp_path / "ws"
    params = dict(WORKSPACE=str(ws), STAGES="96:0.5,128:0.5", IMAGE_SIZE=160, STEPS=12, BATCH_SIZE=4, NUM_DEMO_IMAGES=16,
                  LIVE_FRAMES=6)  # PRETRAINED and TFLITE left at their defaults (face_mask; float32, float16, int8), as make demo runs them
    own = (SHARED / "data" / "face-mask").is_dir()
    if own:  # your own photos: the webcam's stand-in is a video file
        video = real_photo_video(tmp_path / "webcam.mp4", 8)
        params.update(CAPTURE=True, CAPTURE_SOURCE=str(video), NUM_CAPTURE=4, ACCEPT_PRELABELS=True, LIVE_SOURCE=str(video))
    p = subprocess.run([sys.executable, str(ROOT / "scripts" / "run_notebook.py"), *(f"{k}={v}" for k, v in params.items())],
                       capture_output=True, text=True, timeout=900, cwd=ROOT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    assert "step 12/12" in p.stdout and "notebook ran in" in p.stdout  # training progress reached the terminal
    executed = json.loads((ws / "Mask_detection.executed.ipynb").read_text())
    errors = [o for c in executed["cells"] if c["cell_type"] == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    images = sum(1 for c in executed["cells"] for o in c.get("outputs", []) if "image/png" in o.get("data", {}))
    assert images >= 6  # dataset report, training curves, evaluation plots, live frame
    export = ws / "exported-models" / "my_ssd_mobilenet_v2_fpnlite"
    for v in ("float32", "float16", "int8"):  # every default variant, each checked against the SavedModel
        assert (export / f"model_{v}.tflite").is_file() and f"checked model_{v}.tflite on " in p.stdout
    assert "image_size: 160" in (export / "config.yaml").read_text()  # two stages (96, 128), run and exported at IMAGE_SIZE
    assert (ws / "live.mp4").is_file() and (ws / "live.jsonl").read_text().count("\n") == 6
    # step 10: the monitor page served on the live step's source (a video file) until it has played once
    assert "monitor: http://127.0.0.1:" in p.stdout and "every source ended" in p.stdout
    assert re.search(r"(\d+) frames? in [\d.]+ s; people: ", p.stdout) and (ws / "monitor_events.jsonl").is_file()
    if own:
        assert "saved 8 picture(s)" in p.stdout and "pre-labels from the shipped face-mask model" in p.stdout
        assert "saved the pre-labels of 8 pictures" in p.stdout and "8 labelled, 0 without labels" in p.stdout
        assert "generated demo data" not in p.stdout and not (ws / "images" / "demo").exists()


def test_config_cell_takes_intervals_from_the_plan_under_a_time_budget(tmp_path):
    """Issue 26.7: with TIME_BUDGET_MIN the cell derived eval_every, checkpoint_every, log_every and warm-up from the
    ignored STEPS: a 60-minute budget with STEPS = 300 evaluated every 100 steps (20+ COCO evaluations in the hour)."""
    import types

    from mask_od.schedule import Plan, parse_stages
    from mask_od.train import _eval_steps, plan_config

    cells = code_cells()
    params, cell = "".join(cells[0]["source"]), next("".join(c["source"]) for c in cells if "build_config(" in "".join(c["source"]))
    from mask_od import notebook as nb

    env: dict = {"nb": nb}  # as the set-up cell imports it
    exec(params, env)  # noqa: S102 - the notebook's own parameters cell
    from mask_od.label_map import write_label_map

    for name in ("t.record", "v.record"):  # the cell's free_run_dir reads the training records and the label map
        (tmp_path / name).write_bytes(b"")
    write_label_map({1: "with_mask", 2: "without_mask"}, tmp_path / "l.pbtxt")
    env.update(TIME_BUDGET_MIN=60.0, STEPS=300, STAGES="320:0.6,512:0.4", ws=tmp_path,
               data=types.SimpleNamespace(train_records=str(tmp_path / "t.record"), test_records=str(tmp_path / "v.record"),
                                          label_map=tmp_path / "l.pbtxt"))
    exec(cell.replace("print(config.to_yaml())", ""), env)  # noqa: S102 - the config cell, as the notebook runs it
    config = env["config"]
    stages = list(parse_stages(config.stages, config.image_size, config.learning_rate))
    fitted = Plan(stages, [1500, 300], 60.0, seconds_per_step=[1.0, 6.5])  # what the warm-up measured in the hour
    run = plan_config(config, fitted)
    assert (run.eval_every, run.checkpoint_every, run.log_every, run.warmup_steps) == (600, 300, 120, 100)
    assert _eval_steps(run, fitted) == [600, 1200, 1500, 1800]  # not every 100 steps
    assert plan_config(config, Plan(stages, [180, 120], 0.0)).eval_every == 100  # without a budget: STEPS' third, as before


def test_a_parameter_of_the_wrong_type_is_refused_before_the_notebook_runs(tmp_path):
    """STEPS=abc used to run the notebook's first nine cells (demo data and records written) before cell 10 refused it;
    each value is now read as the type of its default in the parameters cell, and refused at once; so is a value of
    the right type that the config, the shipped model's anchors or the split would refuse (STEPS=-5, TEST_RATIO=2)."""
    import os
    import subprocess
    import sys

    for arg, words in (("STEPS=abc", "STEPS=abc: expected a whole number (its default is 300)"),
                       ("STEPS=1.5", "STEPS=1.5: expected a whole number"), ("CAPTURE=maybe", "expected true or false"),
                       ("TIME_BUDGET_MIN=soon", "expected a number"), ("STEPS=017", "expected a whole number"),
                       ("TFLITE=int9", "'int9' is not one of float32, float16, int8"), ("steps=5", "did you mean STEPS?"),
                       # values of the right type that a cell would refuse after the data is written: refused at once
                       ("STEPS=-5", "STEPS=-5: steps must be >= 1, got -5"), ("TEST_RATIO=2", "TEST_RATIO=2.0: ratios must"),
                       ("STAGES=320:abc", "STAGES='320:abc': stage '320:abc'"), ("IMAGE_SIZE=100", "IMAGE_SIZE=100: image_size"),
                       ("ANCHOR_SIZE=4.0", "made for anchor_size 2.0 (this config: 4.0)"),
                       (f"PRETRAINED={tmp_path / 'no.h5'}", "no.h5: pretrained weights file not found"),
                       ("LIVE_FRAMES=-1", "LIVE_FRAMES=-1: must be 1 or more"),  # was refused after training and export
                       ("RUN_NAME=../../x", "RUN_NAME='../../x': must be one folder name"),  # wrote outside the workspace
                       ("WORKSPACE=", "WORKSPACE='': name the folder"),  # wrote the workspace tree into the repository
                       ("SHIPPED_SIZE=500", "SHIPPED_SIZE=500: "), ("NUM_DEMO_IMAGES=3", "NUM_DEMO_IMAGES=3: must be 10 or more"),
                       (f"LIVE_SOURCE={tmp_path / 'no.mp4'}", "no.mp4': no such file or folder"),  # after training
                       ("DATA_DIR=0", "DATA_DIR='0': no such file or folder")):  # a camera index is no folder
        p = subprocess.run([sys.executable, str(ROOT / "scripts" / "run_notebook.py"), f"WORKSPACE={tmp_path / 'ws'}", arg],
                           capture_output=True, text=True, timeout=120, cwd=ROOT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        errors = [x for x in p.stderr.splitlines() if x.startswith("error:")]
        assert p.returncode == 2 and len(errors) == 1 and words in errors[0], (arg, p.stdout[-2000:] + p.stderr[-2000:])
        assert "running Mask_detection.ipynb" not in p.stdout and "Traceback" not in p.stderr
    assert not (tmp_path / "ws").exists()
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from run_notebook import parameter_defaults, typed_value
    finally:
        sys.path.pop(0)
    d = parameter_defaults()
    assert typed_value("RUN_NAME", "2024", d["RUN_NAME"]) == "2024" and typed_value("TIME_BUDGET_MIN", "5", d["TIME_BUDGET_MIN"]) == 5.0
    assert typed_value("TFLITE", "float32,int8", d["TFLITE"]) == ["float32", "int8"] and typed_value("DATA_DIR", "", d["DATA_DIR"]) == ""
    assert typed_value("LEARNING_RATE", "1e-3", d["LEARNING_RATE"]) == 0.001 and typed_value("CAPTURE", "yes", d["CAPTURE"]) is True
    assert typed_value("DATA_DIR", "'my data #1'", d["DATA_DIR"]) == "my data #1"  # text as typed, outer quotes removed
    for name, text in (("TIME_BUDGET_MIN", "1:30"), ("STEPS", "0x10"), ("LEARNING_RATE", "nan"), ("TFLITE", ",,")):
        with pytest.raises(ValueError, match=f"{name}="):
            typed_value(name, text, d[name])


@pytest.mark.slow
def test_a_bad_parameter_value_ends_in_one_error_line(tmp_path):
    """scripts/run_notebook.py: what a cell refuses (here a DATA_DIR whose XML file has no box: only the cell that
    reads the labels can tell) ends in one ``error:`` line on stderr that names the file and the cell, exit code 2,
    not papermill's traceback around the cell's."""
    import os
    import subprocess
    import sys

    bad = tmp_path / "labels"
    bad.mkdir()
    (bad / "photo1.xml").write_text("<annotation><filename>photo1.jpg</filename><object><name>with_mask</name></object></annotation>")
    params = dict(WORKSPACE=str(tmp_path / "ws"), DATA_DIR=str(bad), STEPS=5, BATCH_SIZE=4, LIVE_FRAMES=2, CAPTURE=False)
    p = subprocess.run([sys.executable, str(ROOT / "scripts" / "run_notebook.py"), *(f"{k}={v}" for k, v in params.items())],
                       capture_output=True, text=True, timeout=600, cwd=ROOT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    assert p.returncode == 2, (p.stdout + p.stderr)[-3000:]
    assert "Traceback" not in p.stderr and "PapermillExecutionError" not in p.stderr, p.stderr[-3000:]
    errors = [x for x in p.stderr.splitlines() if x.startswith("error:")]
    message = p.stderr[p.stderr.index("error:"):]  # one message: its first line, then one line per unusable file
    assert len(errors) == 1 and f"{bad / 'photo1.xml'}: image not found" in message and "in cell [" in message, message
    assert "Mask_detection.executed.ipynb" in message and (tmp_path / "ws" / "Mask_detection.executed.ipynb").is_file()
