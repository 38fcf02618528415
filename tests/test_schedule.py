"""The training plan: stages, step budgets fitted to a time budget, the per-stage learning-rate schedule."""

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


def test_config_takes_the_last_stage_size_or_a_larger_run_size_and_refuses_a_smaller_one():
    c = build_config(stages="320:0.7:0.03,640:0.3:0.01")
    assert c.image_size == 640
    with pytest.raises(ConfigError, match="last stage"):
        build_config(stages="320:0.7,640:0.3", image_size=512)
    assert build_config(stages="320:0.6,512:0.4", image_size=640).image_size == 640  # train at 512, run at 640
    with pytest.raises(ConfigError, match="stages"):
        build_config(stages="320:0.7")
    assert build_config(c.to_yaml() and dict(stages=c.stages, image_size=640)).image_size == 640  # a saved config reloads


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
