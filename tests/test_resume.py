"""Issue 26.1-3: a resumed run trains the plan it prints and saves, whatever steps or time budget it is resumed with;
a staged budget counts each later stage's model build (a tiny staged run at 96/128 px, a few steps per session)."""

import json
import time
from pathlib import Path

import pytest
from conftest import tiny_config

pytestmark = pytest.mark.slow

STAGED = "96:0.5:0.01,128:0.5:0.01"


def image_sizes(run: Path) -> dict[int, int]:
    return {r["step"]: r["image_size"] for r in map(json.loads, (run / "train_log.jsonl").read_text().splitlines())}


def test_resume_with_more_steps_then_a_budget_trains_the_plan_it_prints(tiny_records, tmp_path, monkeypatch, capsys):
    import mask_od.train as train_module
    from mask_od.schedule import Plan

    real_build, real_start, real_tick = train_module._build_stage, train_module._Clock.start_stage, train_module._Clock.tick
    seen = {}

    def slow_build(config, stages, si, *args, **kwargs):  # a later stage whose model build takes 3 s more
        t = time.perf_counter()
        if si == 1:
            time.sleep(3.0)
        out = real_build(config, stages, si, *args, **kwargs)
        seen[f"build{si}"] = time.perf_counter() - t
        return out

    def start_stage(self, si, *args):
        seen[f"start{si}"] = time.perf_counter()
        return real_start(self, si, *args)

    def tick(self, s, *args):
        real_tick(self, s, *args)
        if self.si == 1 and s - self.stage_step0 == 3:  # where the cost of starting a stage is measured
            seen["after_start"], seen["setup"] = time.perf_counter() - seen["start1"], self.plan.setup_seconds

    monkeypatch.setattr(train_module, "_build_stage", slow_build)
    monkeypatch.setattr(train_module._Clock, "start_stage", start_stage)
    monkeypatch.setattr(train_module._Clock, "tick", tick)
    run = tmp_path / "run"
    cfg = tiny_config(tiny_records, run, val_records="", stages=STAGED, steps=8, batch_size=2, pretrained="none",
                      warmup_steps=0, log_every=1, checkpoint_every=100)
    assert train_module.train(cfg, progress=False).step == 8
    plan = Plan.from_json((run / "plan.json").read_text())
    assert plan.steps == [4, 4]
    # 26.3: the cost of starting stage 2 counts its model build (it was measured from after the build)
    assert seen["setup"] >= seen["after_start"] + seen["build1"] - 0.5, seen

    monkeypatch.undo()
    capsys.readouterr()
    # 26.1: resumed with steps=12, the 4 steps at 96 stay as trained and steps 9-12 run at 128
    r = train_module.train(cfg.replace(steps=12), progress=False)
    out = capsys.readouterr().out
    assert "resuming at step 8; plan: 4 steps at 96 (lr 0.01), then 8 steps at 128 (lr 0.01)" in out, out
    assert r.step == 12 and Plan.from_json((run / "plan.json").read_text()).steps == [4, 8]
    sizes = image_sizes(run)
    assert [sizes[s] for s in range(1, 13)] == [96] * 4 + [128] * 8

    # 26.2: resumed with a time budget (all sessions count) 0.3 min above what it has spent, it trains, not "done"
    spent = Plan.from_json((run / "plan.json").read_text()).spent_seconds
    r = train_module.train(cfg.replace(steps=12, time_budget_min=round(spent / 60 + 0.3, 2), auto_intervals=True), progress=False)
    out = capsys.readouterr().out
    assert "4 steps at 96 (lr 0.01) trained, then 100% of the rest at 128" in out, out
    plan = Plan.from_json((run / "plan.json").read_text())
    assert r.step > 12 and plan.total_steps == r.step and plan.steps[0] == 4, (r.step, plan)
    assert plan.spent_seconds > spent

