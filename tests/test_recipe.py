"""Recipe v2 on a tiny model: stages across Ctrl-C and resume, a time budget that ends on time, TFLite that keeps
every class the SavedModel detects, and the parity check that fails on a doctored TFLite output."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_config

pytestmark = pytest.mark.slow


def _log(run: Path, name: str) -> list[dict]:
    return [json.loads(x) for x in (run / name).read_text().splitlines() if x.strip()]


def test_stages_survive_ctrl_c_and_resume(tiny_records, tmp_path, capsys, monkeypatch):
    """Two stages (64 then 96 px) in one run directory, interrupted in each stage and resumed: no step is logged
    twice, minutes keep counting, evaluation is at the final size, and best.json is written atomically."""
    from mask_od.runs import load_trained_model
    from mask_od.train import TrainingInterrupted, train

    replaced = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (replaced.append(str(b)), real_replace(a, b))[1])
    run = tmp_path / "staged"
    cfg = tiny_config(tiny_records, run, stages="64:0.5:0.04,96:0.5:0.01", image_size=96, steps=12, eval_every=3,
                      log_every=1, checkpoint_every=100, warmup_steps=2)
    assert cfg.image_size == 96

    def stop_at(step):
        def hook(entry):
            if entry["step"] == step:
                raise KeyboardInterrupt
        return hook

    with pytest.raises(TrainingInterrupted, match=r"interrupted at step 3: checkpoint saved .*resume with python scripts/train.py"):
        train(cfg, on_eval=stop_at(3))
    with pytest.raises(TrainingInterrupted, match="interrupted at step 9"):
        train(cfg, on_eval=stop_at(9))
    out = capsys.readouterr().out
    assert "resumed from" in out and "ckpt-3 at step 3" in out
    result = train(cfg)
    assert "ckpt-9 at step 9" in capsys.readouterr().out
    assert result.step == 12
    log = _log(run, "train_log.jsonl")
    assert [r["step"] for r in log] == list(range(1, 13))  # interrupted steps are redone, never logged twice
    assert [r["image_size"] for r in log] == [64] * 6 + [96] * 6
    minutes = [r["minutes"] for r in log]
    assert minutes == sorted(minutes) and minutes[-1] > minutes[5] > 0  # counted over all three sessions
    assert [h["step"] for h in _log(run, "eval_history.jsonl")] == [3, 6, 9, 12]
    assert json.loads((run / "plan.json").read_text())["steps"] == [6, 6]
    assert any(r.endswith("best.json") for r in replaced) and any(r.endswith("plan.json") for r in replaced)
    model, config, _ = load_trained_model(run)
    assert config.image_size == 96 and model.backbone.input_shape[1] == 96


def test_time_budget_plans_from_measured_speed_and_ends_on_time(tiny_records, tmp_path, capsys):
    """A tiny budget (45 s) ends on time: steps come from the measured speed, not from ``steps``; the final evaluation
    is inside the budget. (Stages under a budget share the same planner; their resume is tested above.)"""
    from mask_od.train import train

    budget_min = 0.75
    run = tmp_path / "budget"
    cfg = tiny_config(tiny_records, run, image_size=96, time_budget_min=budget_min, steps=5, eval_every=0,
                      checkpoint_every=25, log_every=10)
    result = train(cfg)
    out = capsys.readouterr().out
    plan = json.loads((run / "plan.json").read_text())
    assert plan["seconds_per_step"][0] > 0 and ("plan from measured speed" in out or "time budget used" in out)
    spent = plan["spent_seconds"]
    assert 0.85 * budget_min * 60 <= spent <= 1.1 * budget_min * 60, (spent, plan["steps"])
    assert result.step == sum(plan["steps"]) > 5  # the budget, not `steps`, decided
    assert [h["step"] for h in result.history] == [result.step]  # the final evaluation ran, inside the budget
    again = train(cfg)  # resuming a finished run keeps its plan and does nothing more
    assert again.step == result.step and json.loads((run / "plan.json").read_text())["steps"] == plan["steps"]


def _class_logits_model(size: int = 128, silent: bool = False):
    """A seeded random 3-class model whose class logits vary with the image (so ties cannot decide), with the background
    switched off and only one anchor shape scoring; mask_weared_incorrect (id 3) scores like with_mask (id 1) less
    0.2 in logit at every anchor, so each face (anchor) carries both classes; boxes are the anchors."""
    from mask_od.config import build_config
    from mask_od.model import build_model

    # anchors that fit inside the image and zero box offsets: the boxes are the anchors (border-crossing boxes, which
    # the SavedModel once clipped before NMS and TFLite not, are tested on the trained tiny model in test_train_export)
    cfg = build_config(image_size=size, pretrained="none", class_agnostic_nms=False, score_threshold=0.05, max_detections=300,
                       anchor_size=0.75)
    import tf_keras

    tf_keras.utils.set_random_seed(0)
    model = build_model(cfg, 3, load_pretrained=False)
    rng = np.random.default_rng(0)
    from mask_od.model import warm_start_batch_norm

    warm_start_batch_norm(model, rng.normal(0, 1, (4, size, size, 3)).astype(np.float32))  # features of unit scale
    head = {v.name.split("/")[-2] + "/" + v.name.split("/")[-1]: v for v in model.head.variables}
    kernel = next(v for k, v in head.items() if k == "scores/pointwise_kernel:0")
    bias = next(v for k, v in head.items() if k == "scores/bias:0")
    k = rng.normal(0, 0.3, kernel.shape).astype(np.float32).reshape(1, 1, -1, 9, 4)
    k[..., 3] = k[..., 1]  # the rare class follows with_mask
    kernel.assign(k.reshape(kernel.shape))
    b = np.full([9, 4], -9.0, np.float32)
    if not silent:  # silent: no anchor scores above the threshold
        b[4, 1] = 0.0  # anchor shape 4: with_mask
        b[4, 3] = -0.2  # and the rare class, a little lower
    bias.assign(b.reshape(-1))
    for v in model.head.variables:
        if v.name.split("/")[-2] == "boxes":
            v.assign(np.zeros(v.shape, np.float32))
    return model, cfg


def test_tflite_keeps_every_class_the_saved_model_detects(tmp_path):
    """The per-class post-processing: with 2 threads the old single regular-NMS op never output the last class."""
    from mask_od.boxes import box_iou_yxyx
    from mask_od.detect import Detector
    from mask_od.export import convert_tflite, make_tflite_function, save_tflite_graph
    from mask_od.inference import detections_from_outputs, make_detection_module

    model, cfg = _class_logits_model()
    image = np.random.default_rng(1).integers(0, 255, (128, 128, 3), dtype=np.uint8)
    ref = detections_from_outputs(make_detection_module(model, cfg).serve(image[None]))
    data = convert_tflite(save_tflite_graph(make_tflite_function(model, cfg), model, tmp_path / "g"), "float32")
    (tmp_path / "m.tflite").write_bytes(data)
    lm = {1: "with_mask", 2: "without_mask", 3: "mask_weared_incorrect"}
    for threads in (1, 2):
        lite = Detector(tmp_path / "m.tflite", label_map=lm, score_threshold=0.0, max_detections=300, num_threads=threads).predict(image)
        assert set(ref.classes.tolist()) == {1, 3}
        assert set(lite.classes.tolist()) == {1, 3}, threads
        for c in (1, 3):  # the same boxes and scores per class
            r, p = ref.classes == c, lite.classes == c
            assert r.sum() == p.sum(), (threads, c)
            np.testing.assert_allclose(lite.scores[p], ref.scores[r], atol=1e-4)
            assert box_iou_yxyx(lite.boxes[p], ref.boxes[r]).max(axis=1).min() > 0.99  # same boxes (ties in any order)
        # one face (one anchor box) carries both classes
        both = box_iou_yxyx(lite.boxes[lite.classes == 1], lite.boxes[lite.classes == 3]) > 0.99
        assert both.any()


def test_tflite_outputs_nothing_when_nothing_scores(tmp_path):
    """No anchor above the score threshold: the SavedModel finds nothing, and so must the TFLite file (TFLite's fast
    NMS leaves scores in the rows past its count: merged unmasked, they made 100 detections of a blank image)."""
    from mask_od.detect import Detector
    from mask_od.export import convert_tflite, make_tflite_function, save_tflite_graph
    from mask_od.inference import detections_from_outputs, make_detection_module

    model, cfg = _class_logits_model(silent=True)
    image = np.random.default_rng(1).integers(0, 255, (128, 128, 3), dtype=np.uint8)
    assert len(detections_from_outputs(make_detection_module(model, cfg).serve(image[None])).scores) == 0
    data = convert_tflite(save_tflite_graph(make_tflite_function(model, cfg), model, tmp_path / "g"), "float32")
    (tmp_path / "m.tflite").write_bytes(data)
    lm = {1: "with_mask", 2: "without_mask", 3: "mask_weared_incorrect"}
    for threads in (1, 2):
        for img in (image, np.full_like(image, 120)):
            lite = Detector(tmp_path / "m.tflite", label_map=lm, score_threshold=0.0, num_threads=threads).predict(img)
            assert len(lite.scores) == 0, (threads, lite.scores[:5])


def test_parity_failures_names_each_file_at_the_checks_allowance():
    """export.parity_failures applies mask_od.parity's rule to every variant of a check_tflite report, at the
    report's own max_map50_drop, and names each file."""
    from mask_od.export import parity_failures

    ok = {"images": 30, "min_score": 0.3, "pairs": 40, "found": 40, "ref_shown": 41, "kept": 40, "other_shown": 40,
          "score_shift": 0.001, "score_spread": 0.02, "box_iou": 0.95, "box_shift": [0.0, 0.001], "box_shift_se": [0.002, 0.002],
          "detections_per_class": {"with_mask": 50, "without_mask": 9}, "ref_detections_per_class": {"with_mask": 50, "without_mask": 10},
          "ref_shown_per_class": {"with_mask": 40, "without_mask": 1},
          "map50_drop": 0.03, "map50_drop_ci95": [0.015, 0.06]}
    check = {"max_map50_drop": 0.01, "float32": ok, "int8": dict(ok, score_shift=-0.2)}
    problems = parity_failures(check, ["float32", "int8"])
    assert len(problems) == 3, problems
    assert "model_float32.tflite mAP@0.5 is 3.0 points below" in problems[0] and "allowed 1.0" in problems[0]
    assert problems[1].startswith("model_int8.tflite scores are shifted by -0.200") and "mAP@0.5" in problems[2]
    assert parity_failures(dict(check, max_map50_drop=0.02), ["float32"]) == []  # the lower bound 1.5 is within 2 points
    empty = dict(ok, pairs=0, found=0, ref_shown=0, kept=0, other_shown=0, score_shift=None, box_iou=None,
                 box_shift=None, box_shift_se=None, ref_detections_per_class={"with_mask": 0},
                 ref_shown_per_class={"with_mask": 0}, map50_drop_ci95=[0.0, 0.0])
    assert parity_failures({"max_map50_drop": 0.01, "x": empty}, ["x"]) == []  # nothing to compare is no failure
