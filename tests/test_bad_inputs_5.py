"""Bad inputs a fresh tester found in session 25: training that wrote into a folder of the user's own files, config
files whose numbers YAML reads as other numbers, values that ended in a traceback (seed, huge steps) and a missing
pretrained file refused only after the run folder was written."""

import pytest

from conftest import tiny_config


def test_training_refuses_an_output_dir_of_other_files(tiny_records, tmp_path):
    """train.py c.yaml output_dir=FOLDER replaced the user's config.yaml there and appended to their train_log.jsonl;
    output_dir= (empty) wrote the run into the working directory."""
    from mask_od.train import TrainingError, train

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.yaml").write_text("steps: 5\n")
    (mine / "train_log.jsonl").write_text("my notes\n")
    before = {p.name: p.read_bytes() for p in mine.iterdir()}
    with pytest.raises(TrainingError, match=r"mine: output_dir holds files that are not a training run \(config.yaml, train_log.jsonl\)"):
        train(tiny_config(tiny_records, mine, steps=1), progress=False)
    assert {p.name: p.read_bytes() for p in mine.iterdir()} == before
    with pytest.raises(TrainingError, match="output_dir .* is blank"):
        train(tiny_config(tiny_records, tmp_path, steps=1).replace(output_dir=""), progress=False)
    (tmp_path / "empty").mkdir()  # an empty folder is a new run's place: not refused by this check
    from mask_od.train import check_inputs

    check_inputs(tiny_config(tiny_records, tmp_path / "empty", steps=1))


def test_a_missing_pretrained_file_is_refused_before_the_run_folder_is_written(tiny_records, tmp_path):
    from mask_od.train import TrainingError, train

    run = tmp_path / "run"
    with pytest.raises(TrainingError, match=r"pretrained: .*no\.h5: pretrained weights file not found"):
        train(tiny_config(tiny_records, run, steps=1, pretrained=str(tmp_path / "no.h5")), progress=False)
    assert not run.exists()


@pytest.mark.parametrize("text, words", [
    ("steps: 017\n", "config key 'steps': expected a whole number (its default is 2000), got '017'"),  # YAML 1.1: 15
    ("steps: 0x10\n", "got '0x10'"), ("steps: 10:00\n", "got '10:00'"), ("steps: 1_000\n", "got '1_000'"),  # 16, 600, 1000
    ("learning_rate: 1:30\n", "config key 'learning_rate': expected a number"),  # 90
    ("learning_rate: .inf\n", "got '.inf'"),
    ("steps: 7\nseed: 1\nsteps: 9\n", "key 'steps' given twice (lines 1 and 3)"),
    ("seed: -1\n", "seed must lie in [0, 2**32 - 1]"), ("seed: 4294967296\n", "got 4294967296"),
    ("steps: 10000000000000000000000\n", "steps must be below 2**31"),
])
def test_config_file_numbers_are_read_in_base_10_and_checked(tmp_path, text, words):
    from mask_od.config import ConfigError, build_config

    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        build_config(f)
    assert str(e.value).startswith(str(f)) and words in str(e.value), str(e.value)


def test_config_file_numbers_that_are_numbers_still_are(tmp_path):
    from mask_od.config import build_config

    f = tmp_path / "c.yaml"
    f.write_text("steps: 300\nlearning_rate: 1e-3\nweight_decay: 4.0e-05\nema_decay: .5\nseed: 0\naug_hflip: no\n"
                 "stages: 320:0.5:0.03,512:0.5:0.01\nanchor_aspect_ratios: 0.67,0.9,1.2\nscore_threshold: 0\n")
    c = build_config(f)
    assert (c.steps, c.learning_rate, c.weight_decay, c.ema_decay, c.aug_hflip) == (300, 0.001, 4e-05, 0.5, False)
    assert c.stages == "320:0.5:0.03,512:0.5:0.01" and c.anchor_aspect_ratios == "0.67,0.9,1.2" and c.score_threshold == 0.0
    assert build_config(c.save(tmp_path / "saved.yaml")) == c


def test_threshold_errors_name_the_key_and_the_value():
    from mask_od.config import ConfigError, build_config

    for kw, words in ((dict(nms_iou_threshold=1.5), "nms_iou_threshold must lie in (0, 1], got 1.5"),
                      (dict(score_threshold=-0.1), "score_threshold must lie in [0, 1), got -0.1"),
                      (dict(aug_scale_min=2.0, aug_scale_max=1.0), "got aug_scale_min 2.0 and aug_scale_max 1.0")):
        with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
            build_config(**kw)


def test_export_refuses_a_negative_count_of_float_layers(tmp_path):
    """export.py --int8_float_layers -1 was taken as 0 (export_report.json: float_layers [])."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "export.py"
    p = subprocess.run([sys.executable, str(script), "--run_dir", str(tmp_path), "--out_dir", str(tmp_path / "x"),
                        "--int8_float_layers", "-1"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "--int8_float_layers: -1 is less than 0" in p.stderr, p.stderr[-2000:]
    assert not (tmp_path / "x").exists()


def test_a_training_run_given_as_a_model_says_to_export_it(tmp_path):
    """detect_live.py / serve.py --model RUN_DIR said only 'a folder without saved_model.pb'."""
    from mask_od.detect import ModelError, resolve_model_path

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("steps: 5\n")
    with pytest.raises(ModelError, match=r"run: a training run, not an exported model; export it first \(python scripts/export.py --run_dir"):
        resolve_model_path(run)


def test_training_refuses_a_blank_output_dir_or_one_below_a_file(tiny_records, tmp_path, monkeypatch):
    """output_dir=' ' trained into a folder named ' '; output_dir=FILE gave '[Errno 17] File exists' and FILE/sub a
    NotADirectoryError traceback."""
    from mask_od.train import TrainingError, train

    monkeypatch.chdir(tmp_path)
    with pytest.raises(TrainingError, match="is blank"):
        train(tiny_config(tiny_records, " ", steps=1), progress=False)
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    for out, words in ((notes, "notes.txt is a file, not a folder"), (notes / "sub", "notes.txt is a file, not a folder")):
        with pytest.raises(TrainingError, match=f"output_dir .*{words}"):
            train(tiny_config(tiny_records, out, steps=1), progress=False)
    assert notes.read_text() == "mine" and sorted(x.name for x in tmp_path.iterdir()) == ["notes.txt"]


def test_records_cut_short_are_refused_naming_the_file(tiny_records, tmp_path):
    """A TFRecord file cut short in the middle (head -c) ended evaluate, train and export in a DataLossError traceback."""
    from pathlib import Path

    from mask_od.input_pipeline import RecordsError, require_examples

    data = Path(tiny_records["train_records"]).read_bytes()
    cut = tmp_path / "cut.record"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(RecordsError, match=r"cut\.record: damaged after its first [0-9,]+ record\(s\)"):
        require_examples(str(cut))
    assert require_examples(tiny_records["train_records"]) == [tiny_records["train_records"]]


def test_training_refuses_train_records_cut_short_before_writing(tiny_records, tmp_path):
    """train.py train_records=CUT (head -c of a good file) ended in a DataLossError traceback from records_identity."""
    from pathlib import Path

    from mask_od.errors import MaskODError
    from mask_od.train import train

    data = Path(tiny_records["train_records"]).read_bytes()
    cut = tmp_path / "cut.record"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(MaskODError, match=r"cut\.record: damaged after its first"):
        train(tiny_config(tiny_records, tmp_path / "run", steps=1, train_records=str(cut)), progress=False)
    assert not (tmp_path / "run").exists()
