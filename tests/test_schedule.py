"""The training plan: stages, step budgets fitted to a time budget, the per-stage learning-rate schedule."""

import dataclasses

import pytest

from mask_od.config import ConfigError, build_config
from mask_od.schedule import Plan, Stage, fit_steps, initial_plan, make_stage_schedule, parse_stages, split_steps


def test_stages_parse_and_are_validated():
    assert parse_stages("", 320, 0.03) == (Stage(320, 1.0, 0.03),)
    assert parse_stages("320:0.75:0.03, 640:0.25", 320, 0.02) == (Stage(320, 0.75, 0.03), Stage(640, 0.25, 0.02))
    for bad, word in [("320:0.5", "add up to 0.5"), ("300:1", "multiple of 32"), ("320", "size:share"), ("a:1", "integer"),
                      ("320:0:0.1,640:1", "share must lie")]:
        with pytest.raises(ValueError, match=word):
            parse_stages(bad, 320, 0.03)


def test_config_takes_the_last_stage_size_or_a_larger_run_size_and_refuses_a_smaller_one(tmp_path):
    c = build_config(stages="320:0.7:0.03,640:0.3:0.01")
    assert c.image_size == 640
    with pytest.raises(ConfigError, match="last stage"):
        build_config(stages="320:0.7,640:0.3", image_size=512)
    assert build_config(stages="320:0.6,512:0.4", image_size=640).image_size == 640  # train at 512, run at 640
    with pytest.raises(ConfigError, match="stages"):
        build_config(stages="320:0.7")
    for saved in (c, build_config(stages="320:0.6,512:0.4", image_size=640)):  # a saved config reloads as it was
        assert build_config(saved.save(tmp_path / "config.yaml")) == saved


def test_split_steps_by_share():
    stages = parse_stages("320:0.75,640:0.25", 320, 0.03)
    assert split_steps(1000, stages) == [750, 250]
    assert sum(split_steps(7, stages)) == 7


def test_fit_steps_by_hand():
    stages = parse_stages("320:0.5,640:0.5", 320, 0.03)
    # 100 s, 1 s/step at 320 and 4 s/step at 640: each stage gets 50 s -> 50 and 12 steps
    assert fit_steps(100, stages, [1.0, 4.0]) == [50, 12]
    # 20 s spent on 20 steps of stage 1 at the measured speed: re-fitting gives the same plan
    assert fit_steps(80, stages, [1.0, 4.0], done_in_current=20) == [50, 12]
    # overheads (evaluations, model builds) come off the budget first
    assert fit_steps(120, stages, [1.0, 4.0], overhead_seconds=20) == [50, 12]
    # a slower machine buys fewer steps with the same budget; a faster one more
    assert fit_steps(100, stages, [2.0, 8.0]) == [25, 6] and fit_steps(100, stages, [0.5, 2.0]) == [100, 25]
    # the current stage always keeps one more step; a later one at least one
    assert fit_steps(0, stages, [1.0, 4.0], done_in_current=30) == [31, 1]


def test_plan_refit_stage_lookup_and_json_round_trip():
    stages = list(parse_stages("320:0.5:0.03,640:0.5:0.01", 320, 0.03))
    plan = initial_plan(stages, 100, 1.0)
    # before any speed is measured the plan says so, not its provisional open-ended step counts
    assert plan.describe() == ("1 min: 50% at 320 (lr 0.03), then 50% at 640 (lr 0.01); steps planned from the speed "
                               "measured in the warm-up")
    plan.seconds_per_step = [0.5, 2.0]
    plan.spent_seconds, plan.eval_seconds = 10.0, 5.0
    plan.refit(0, 10, evals_left=2, builds_left=1)  # 60 s - 10 spent - 2 x 5 eval - 0 setup = 40 s left
    # X = (40 + 10 x 0.5) / 1 = 45 s per unit of share: 22.5 s -> 45 steps at 0.5 s, 11 steps at 2 s
    assert plan.steps == [45, 11]
    assert [plan.stage_at(s) for s in (0, 44, 45, 55)] == [0, 0, 1, 1] and plan.stage_start(1) == 45
    assert Plan.from_json(plan.to_json()) == plan
    assert plan.describe() == "1 min: 45 steps at 320 (lr 0.03), then 11 steps at 640 (lr 0.01)"
    fixed = initial_plan(stages, 100, 0.0)
    fixed.refit(0, 10, 1, 1)  # no budget: the step split stays
    assert fixed.steps == [50, 50]


def test_stage_schedule_warms_up_decays_and_never_goes_negative():
    import tensorflow as tf

    start, total = tf.Variable(100, dtype=tf.int64), tf.Variable(200, dtype=tf.int64)
    lr = make_stage_schedule(0.02, warmup_steps=100, start_step=start, total_steps=total, alpha=0.01)
    at = lambda s: float(lr(tf.constant(s)))  # noqa: E731
    assert at(100) == pytest.approx(0.002)  # peak / 10 at the stage start
    assert at(140) == pytest.approx(0.02)  # warmup capped at a fifth of the stage (40 steps)
    assert at(300) == pytest.approx(0.0002)  # alpha x peak at the end
    assert at(220) == pytest.approx(0.0002 + (0.02 - 0.0002) * 0.5, rel=1e-4)  # half way through the cosine
    assert at(0) == pytest.approx(0.002)  # a step before the stage (a new optimizer's counter) is not negative
    total.assign(100)  # a re-fitted plan changes the schedule in place
    assert at(200) == pytest.approx(0.0002)


def test_budget_refit_counts_the_evaluations_of_the_fitted_plan_not_of_the_open_ended_one():
    from mask_od.train import _eval_steps, refit_with_evaluations

    config = build_config(val_records="val.record", eval_every=100, time_budget_min=60, stages="320:0.6,512:0.4")
    stages = list(parse_stages(config.stages, 320, 0.03))
    plan = initial_plan(stages, config.steps, config.time_budget_min)  # open-ended: ~1e6 steps, ~1e4 evaluations
    plan.seconds_per_step, plan.eval_seconds, plan.spent_seconds = [1.0, 2.56], 12.0, 60.0
    refit_with_evaluations(plan, config, 0, 10, 10)
    evals = [e for e in _eval_steps(config, plan) if e > 10]
    cost = plan.spent_seconds - 10 * 1.0 + sum(n * t for n, t in zip(plan.steps, plan.seconds_per_step)) + len(evals) * 12.0
    assert 0.97 * 3600 <= cost <= 3600 + 12.0  # the budget is used, evaluations included (not 14 steps and 1000 evaluations)
    assert plan.steps[0] > 1500 and len(evals) == len(range(100, plan.total_steps + 1, 100)) + 2  # every 100, the stage end, the last step


STAGED = "96:0.5:0.01,128:0.5:0.01"


def test_resume_keeps_the_finished_stages_and_replans_the_rest_for_new_steps():
    """Issue 26.1: a 4-step staged run (2 at 96, 2 at 128) resumed with steps=8, then 16, planned 4+4 and 8+8 while
    it trained at 128 from step 5 on; the plan now says what happens."""
    from mask_od.schedule import resume_plan

    stages = parse_stages(STAGED, 128, 0.01)
    first = initial_plan(stages, 4, 0.0)
    assert first.steps == [2, 2]
    second = resume_plan(first, stages, 8, 0.0, step=4)
    assert second.steps == [2, 6] and second.trained_stages == 1
    assert second.describe() == "2 steps at 96 (lr 0.01), then 6 steps at 128 (lr 0.01)"
    assert resume_plan(second, stages, 16, 0.0, step=8).steps == [2, 14]
    assert resume_plan(first, stages, 8, 0.0, step=1).steps == [4, 4]  # interrupted in stage 1: both re-planned
    assert resume_plan(initial_plan(stages, 8, 0.0), stages, 4, 0.0, step=3).steps == [3, 1]  # stage 1 past its share: ends now
    assert resume_plan(initial_plan(stages, 8, 0.0), stages, 5, 0.0, step=6).steps == [4, 2]  # steps below the run: nothing left
    assert resume_plan(first, stages, 4, 0.0, step=4) == dataclasses.replace(first, trained_stages=1)  # unchanged: same plan


def test_budget_on_resume_of_a_run_without_one_is_planned_not_ignored():
    """Issue 26.2: a run without a budget resumed with time_budget_min kept its finished plan and trained nothing;
    ``Plan.refit`` / ``fit_steps`` on a plan without measured speeds raised IndexError."""
    from mask_od.schedule import OPEN_ENDED_STEPS, resume_plan

    stages = parse_stages(STAGED, 128, 0.01)
    done = dataclasses.replace(initial_plan(stages, 4, 0.0), spent_seconds=45.0)
    plan = resume_plan(done, stages, 4, 3.0, step=4)
    assert plan.steps[0] == 2 and plan.steps[1] > OPEN_ENDED_STEPS // 2  # stage 1 kept; stage 2 runs until measured
    assert plan.describe() == ("3 min: 2 steps at 96 (lr 0.01) trained, then 100% of the rest at 128 (lr 0.01); steps "
                               "planned from the speed measured in the warm-up")
    assert plan.spent_seconds == 45.0  # the budget counts every session of the run
    unmeasured = Plan(list(stages), [2, 2], 3.0, 45.0, seconds_per_step=[])
    unmeasured.refit(1, 2, evals_left=1, builds_left=0)  # no speed: stays as it is, no IndexError
    assert unmeasured.steps == [2, 2]
    with pytest.raises(ValueError, match="measured seconds-per-step"):
        fit_steps(60, stages, [])
    spent = resume_plan(done, stages, 4, 0.5, step=4)  # 0.5 min < 45 s already spent: nothing left
    assert spent.total_steps == 4


def test_a_larger_budget_on_a_finished_budgeted_run_refits_the_rest(tmp_path):
    """Issue 26.2, the budgeted case: a finished 100-s run (50 steps at 1 s, 12 at 4 s) resumed with 3 minutes gets
    the 80 s left as more steps of its last stage (80 / 4 = 20); the plan is printed and saved before training."""
    from mask_od.train import _load_plan

    stages = parse_stages("320:0.5:0.03,640:0.5:0.01", 640, 0.03)
    old = Plan(list(stages), [50, 12], 100 / 60, spent_seconds=100.0, seconds_per_step=[1.0, 4.0])
    (tmp_path / "plan.json").write_text(old.to_json())
    config = build_config(stages="320:0.5:0.03,640:0.5:0.01", time_budget_min=3.0, val_records="", output_dir=str(tmp_path))
    plan = _load_plan(config, stages, tmp_path, step=62)
    assert plan.steps == [50, 32]
    assert Plan.from_json((tmp_path / "plan.json").read_text()).steps == [50, 32]
    less = _load_plan(config.replace(time_budget_min=1.0), stages, tmp_path, step=62)  # 60 s < 100 s spent
    assert less.total_steps == 62
