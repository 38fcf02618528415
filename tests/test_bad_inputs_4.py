"""Bad inputs, round four: records that hold no example or are not TFRecords, an --out_dir holding the user's own
files, a checkpoint whose .data file is cut short: refused with one ``error:`` line naming the file, nothing written."""

import importlib.util
import shutil
from pathlib import Path

import pytest
from conftest import ROOT, tiny_config, tree_digest


def script_main(capsys, name: str, *args) -> tuple[int, str, str]:
    """Run ``scripts/<name>.py``'s main in this process (no second TensorFlow start): (exit code, stdout, stderr)."""
    spec = importlib.util.spec_from_file_location(f"_script_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    capsys.readouterr()
    rc = module.main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def one_error_line(rc: int, out: str, err: str, *words: str) -> str:
    assert rc == 2, out[-3000:] + err[-3000:]
    lines = [x for x in err.splitlines() if x.startswith("error:")]
    assert len(lines) == 1, err[-3000:]
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def tiny_run(tiny_records, tmp_path_factory):
    """A 2-step run (random weights, 128 px): config.yaml, label_map.pbtxt, checkpoints/ckpt-1 and -2, best/, eval/."""
    from mask_od.train import train

    cfg = tiny_config(tiny_records, tmp_path_factory.mktemp("run4") / "run", steps=2, batch_size=2, warmup_steps=1,
                      checkpoint_every=1, log_every=1, pretrained="none")
    train(cfg, progress=False)
    return Path(cfg.output_dir), cfg


def cut_short(path: Path) -> None:
    """Truncate a file to half its size, as a full disk or an interrupted copy leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.fixture
def run_copy(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run[0], run)
    return run


# --- 4. a checkpoint whose .data file is cut short --------------------------------------------------------------------
def test_4_training_resumes_from_the_previous_checkpoint_when_the_latest_data_file_is_cut_short(tmp_path, capsys):
    import tensorflow as tf

    from mask_od.train import _restore_latest

    v = tf.Variable(1.0)
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(v=v), str(tmp_path / "checkpoints"), max_to_keep=3)
    manager.save(checkpoint_number=1)
    v.assign(2.0)
    latest = manager.save(checkpoint_number=2)
    cut_short(Path(latest + ".data-00000-of-00001"))
    v.assign(0.0)
    assert _restore_latest(manager, lambda p: manager.checkpoint) == str(tmp_path / "checkpoints" / "ckpt-1")
    assert float(v.numpy()) == 1.0
    assert f"warning: {latest} cannot be read (Read less bytes than requested); trying the previous checkpoint" in capsys.readouterr().out


def test_4_evaluate_and_export_name_a_best_checkpoint_whose_data_file_is_cut_short(run_copy, tmp_path, capsys):
    best = Path(str(next((run_copy / "best").glob("ckpt-*.index")))[: -len(".index")])
    cut_short(Path(f"{best}.data-00000-of-00001"))
    before = tree_digest(run_copy)
    rc, out, err = script_main(capsys, "evaluate", "--model", run_copy)
    one_error_line(rc, out, err, f"{best}: checkpoint cannot be read", "cut short", "--which latest")
    rc, out, err = script_main(capsys, "export", "--run_dir", run_copy, "--out_dir", tmp_path / "export", "--tflite")
    one_error_line(rc, out, err, f"{best}: checkpoint cannot be read", "cut short", "--which latest")
    assert not (tmp_path / "export").exists() and tree_digest(run_copy) == before
    rc, out, err = script_main(capsys, "evaluate", "--model", run_copy, "--which", "latest", "--out_dir", tmp_path / "eval")
    assert rc == 0 and (tmp_path / "eval" / "metrics.json").is_file(), out + err


# --- 1. records that hold no example, or are not TFRecords ------------------------------------------------------------
@pytest.mark.parametrize("name, data, words", [
    ("empty.record", b"", "no examples in it"),
    ("some.txt", b"hi", "no examples in it"),
    ("label_map.pbtxt", b"item { id: 1 name: 'with_mask' }\n", "not a TFRecord file"),
])
def test_1_evaluate_refuses_records_without_examples_naming_the_file(tiny_run, tmp_path, capsys, name, data, words):
    records = tmp_path / name
    records.write_bytes(data)
    before = tree_digest(tiny_run[0])
    rc, out, err = script_main(capsys, "evaluate", "--model", tiny_run[0], "--records", records, "--out_dir", tmp_path / "eval")
    one_error_line(rc, out, err, f"{records}: {words}")
    assert not (tmp_path / "eval").exists() and tree_digest(tiny_run[0]) == before


def test_1_training_refuses_val_records_without_examples(tiny_records, tmp_path):
    from mask_od.errors import MaskODError
    from mask_od.train import train

    empty = tmp_path / "val.record"
    empty.write_bytes(b"")
    with pytest.raises(MaskODError, match=f"{empty}: no examples in it"):
        train(tiny_config(tiny_records, tmp_path / "run", steps=1, val_records=str(empty), pretrained="none"), progress=False)
    assert not (tmp_path / "run").exists()


# --- 2. export's check records without examples -----------------------------------------------------------------------
def test_2_export_refuses_check_records_without_examples_before_converting(tiny_run, tmp_path, capsys):
    empty = tmp_path / "empty.record"
    empty.write_bytes(b"")
    rc, out, err = script_main(capsys, "export", "--run_dir", tiny_run[0], "--out_dir", tmp_path / "export",
                               "--check_records", empty, "--tflite", "float32")
    one_error_line(rc, out, err, f"check records: {empty}: no examples in it", "--check_records")
    rc, out, err = script_main(capsys, "export", "--run_dir", tiny_run[0], "--out_dir", tmp_path / "export",
                               "--calibration_records", empty, "--tflite", "int8")
    one_error_line(rc, out, err, f"calibration records: {empty}: no examples in it", "--calibration_records")
    assert not (tmp_path / "export").exists() and [p.name for p in tmp_path.iterdir()] == ["empty.record"]


# --- 3. evaluate's --out_dir: never a folder of the user's own files -------------------------------------------------
LABELS = {1: "with_mask", 2: "without_mask"}


def fake_evaluation(out_dir):
    """evaluate() of a fake predictor on two images (no model): seconds."""
    import numpy as np

    from mask_od.detections import Detections
    from mask_od.evaluate import evaluate

    box = np.array([[0.2, 0.2, 0.6, 0.6]], np.float32)
    examples = [(np.zeros((64, 64, 3), np.uint8), box, np.array([1]), f"img{i}") for i in range(2)]
    return evaluate(lambda img: Detections.from_arrays(box, [1], [0.9]), examples, LABELS, out_dir=out_dir, progress=False)


def test_3_evaluate_refuses_an_out_dir_holding_the_users_own_files(tiny_run, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "metrics.json").write_text('{"accuracy": 0.93}')
    (mine / "pr_curve.png").write_bytes(b"my own plot")
    before = tree_digest(mine)
    rc, out, err = script_main(capsys, "evaluate", "--model", tiny_run[0], "--out_dir", mine)
    one_error_line(rc, out, err, f"{mine} holds files", "not an earlier evaluation")
    assert tree_digest(mine) == before and sorted(p.name for p in tmp_path.iterdir()) == ["mine"]
    from mask_od.evaluate import EvaluationError

    with pytest.raises(EvaluationError, match="not an earlier evaluation"):
        fake_evaluation(mine)
    assert tree_digest(mine) == before


def test_3_evaluate_rewrites_an_earlier_evaluation_keeping_the_runs_tensorboard_events(run_copy, capsys):
    eval_dir = run_copy / "eval"  # written by training: TensorBoard events, metrics.json and the plots
    events = sorted(p.name for p in eval_dir.glob("events.out.tfevents.*"))
    assert events and (eval_dir / "metrics.json").is_file()
    (eval_dir / "metrics.json").write_text((eval_dir / "metrics.json").read_text().replace('"images"', '"images_marker": 0, "images"', 1))
    rc, out, err = script_main(capsys, "evaluate", "--model", run_copy)
    assert rc == 0, out + err
    assert "images_marker" not in (eval_dir / "metrics.json").read_text()  # replaced by the new evaluation
    assert sorted(p.name for p in eval_dir.glob("events.out.tfevents.*")) == events
    assert not [p for p in run_copy.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_3_a_failed_evaluation_leaves_the_earlier_one_and_an_events_only_folder_is_taken(tmp_path, monkeypatch):
    out = tmp_path / "eval"
    out.mkdir()
    (out / "events.out.tfevents.1.host.1.v2").write_bytes(b"")  # a run's eval/ before its final evaluation
    m = fake_evaluation(out)
    assert (out / "metrics.json").is_file() and m["plots"]["pr_curve"] == str(out / "pr_curve.png")
    before = tree_digest(out)

    import mask_od.evaluate_plots

    def broken_plots(samples, metrics, label_map, folder):
        (folder / "pr_curve.png").write_bytes(b"half")
        raise RuntimeError("plotting failed")

    monkeypatch.setattr(mask_od.evaluate_plots, "plot_all", broken_plots)
    with pytest.raises(RuntimeError, match="plotting failed"):
        fake_evaluation(out)
    assert tree_digest(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["eval"]
