"""Issue 24 (accuracy levers): ``ema_decay`` keeps Model Garden's moving average of the weights; every evaluation scores
both the average (kept in best/, exported) and the raw weights (the A/B of one run); without val records the average of
the final step is saved in averaged/, which export and transfer read."""

import json

import numpy as np
import pytest
from conftest import tiny_config

pytestmark = pytest.mark.slow


def _weights(ckpt: str) -> dict[str, np.ndarray]:
    import tensorflow as tf

    reader = tf.train.load_checkpoint(ckpt)
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map() if k.startswith("model/") and "OPTIMIZER_SLOT" not in k}


def _max_diff(a: dict, b: dict) -> float:
    return max(float(np.abs(a[k] - b[k]).max()) for k in a if a[k].dtype.kind == "f")


def test_ema_evaluates_both_and_keeps_the_average(tiny_records, tmp_path):
    from mask_od.runs import weights_checkpoint
    from mask_od.train import train

    run = tmp_path / "run"
    cfg = tiny_config(tiny_records, run, steps=12, batch_size=2, pretrained="none", eval_every=6, checkpoint_every=6,
                      ema_decay=0.9, log_every=3)
    result = train(cfg, progress=False)
    hist = [json.loads(x) for x in (run / "eval_history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in hist] == [6, 12]
    for h in hist:  # both arms scored at each evaluation
        assert 0 <= h["mAP50_raw"] <= 1 and set(h["per_class_AP50_raw"]) == set(h["per_class_AP50"])
    # best/ holds the average, not the raw weights of that step
    best = json.loads((run / "best" / "best.json").read_text())
    raw = _weights(str(run / "checkpoints" / f"ckpt-{best['step']}"))
    avg = _weights(result.best_checkpoint)
    assert set(raw) == set(avg)
    assert _max_diff(raw, avg) > 1e-4
    # the raw weights are back in the model after each evaluation: training went on from them (resumable checkpoint)
    assert weights_checkpoint(run) == result.best_checkpoint


def test_ema_without_val_saves_the_average_for_export(tiny_records, tmp_path):
    from mask_od.runs import weights_checkpoint
    from mask_od.train import train

    run = tmp_path / "run"
    cfg = tiny_config(tiny_records, run, val_records="", steps=8, batch_size=2, pretrained="none", ema_decay=0.9,
                      checkpoint_every=100, log_every=4)
    train(cfg, progress=False)
    assert not (run / "best").exists()
    avg_ckpt = weights_checkpoint(run)
    assert "averaged" in avg_ckpt
    assert _max_diff(_weights(str(run / "checkpoints" / "ckpt-8")), _weights(avg_ckpt)) > 1e-4
    assert "checkpoints" in weights_checkpoint(run, which="latest")


def test_ema_off_uses_the_plain_optimizer(tiny_records, tmp_path):
    from mask_od.train import train

    run = tmp_path / "run"
    train(tiny_config(tiny_records, run, val_records="", steps=2, batch_size=2, pretrained="none", checkpoint_every=100), progress=False)
    assert not (run / "averaged").exists()
    assert not any("ExponentialMovingAverage" in k or "ema_base_optimizer" in k
                   for k in __import__("tensorflow").train.load_checkpoint(str(run / "checkpoints" / "ckpt-2")).get_variable_to_shape_map())
