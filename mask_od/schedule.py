"""Training plan: input-size stages, step budgets fitted to a time budget from measured speed, and the learning-rate
schedule of each stage (warmup then cosine) that follows a re-fitted plan."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Sequence

OPEN_ENDED_STEPS = 1_000_000  # provisional plan under a time budget, before any speed is measured


@dataclasses.dataclass(frozen=True)
class Stage:
    """One part of a run at one input size: ``share`` of the steps (or of the time budget), peak learning rate."""

    image_size: int
    share: float
    learning_rate: float


def parse_stages(spec: str, image_size: int, learning_rate: float) -> tuple[Stage, ...]:
    """``"320:0.75:0.03,640:0.25:0.01"`` (size:share[:peak lr], comma-separated) -> stages; ``""`` -> one stage at
    ``image_size`` with ``learning_rate``. Shares must add up to 1 (within 1e-6). Raises ValueError naming the part."""
    if not spec.strip():
        return (Stage(image_size, 1.0, learning_rate),)
    stages = []
    for part in spec.split(","):
        bits = part.strip().split(":")
        if len(bits) not in (2, 3):
            raise ValueError(f"stage {part!r}: expected size:share or size:share:learning_rate")
        try:
            size, share = int(bits[0]), float(bits[1])
            lr = float(bits[2]) if len(bits) == 3 else learning_rate
        except ValueError:
            raise ValueError(f"stage {part!r}: size must be an integer, share and learning rate numbers") from None
        if size < 64 or size % 32:
            raise ValueError(f"stage {part!r}: image size must be a multiple of 32 >= 64")
        if not 0 < share <= 1 or not lr > 0:
            raise ValueError(f"stage {part!r}: share must lie in (0, 1] and learning rate be > 0")
        stages.append(Stage(size, share, lr))
    total = sum(s.share for s in stages)
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"stages {spec!r}: shares add up to {total:g}, not 1")
    return tuple(stages)


def split_steps(total_steps: int, stages: Sequence[Stage]) -> list[int]:
    """Steps per stage for a fixed step count: shares rounded, the last stage takes the remainder; each >= 1."""
    out = [max(1, int(round(total_steps * s.share))) for s in stages[:-1]]
    return out + [max(1, total_steps - sum(out))]


def relative_step_cost(image_size: int, reference_size: int) -> float:
    """Expected seconds per step at ``image_size`` relative to ``reference_size``: the work grows with the pixels."""
    return (image_size / reference_size) ** 2


def fit_steps(seconds_left: float, stages: Sequence[Stage], seconds_per_step: Sequence[float],
              overhead_seconds: float = 0.0, done_in_current: int = 0) -> list[int]:
    """Total steps of the stages still to run (the first is the current stage, ``done_in_current`` of its steps done)
    so that the steps left fill ``seconds_left - overhead_seconds`` and each stage's whole time stays proportional to
    its share: with ``X`` seconds per unit of share, stage ``k`` runs ``share_k * X / seconds_per_step_k`` steps and
    ``sum(share) * X - done * sps_0 = seconds left``. A current stage that already used its share ends after one
    more step and the later stages split what is left; each later stage keeps at least one step. Raises ValueError
    unless ``seconds_per_step`` holds one measured value > 0 per stage."""
    if len(seconds_per_step) != len(stages) or not all(x > 0 for x in seconds_per_step):
        raise ValueError(f"fit_steps needs a measured seconds-per-step > 0 for each of the {len(stages)} stage(s), got "
                         f"{list(seconds_per_step)}: measure speed first (a plan without one stays open-ended)")
    budget = max(0.0, seconds_left - overhead_seconds)
    sps = list(seconds_per_step)
    x = (budget + done_in_current * sps[0]) / (sum(s.share for s in stages) or 1.0)
    out = [int(s.share * x / t) for s, t in zip(stages, sps)]
    if out[0] <= done_in_current:  # the current stage has used its share: it ends now, later stages split the rest
        later = sum(s.share for s in stages[1:]) or 1.0
        rest = max(0.0, budget - sps[0])
        out = [done_in_current + 1] + [int(s.share * rest / later / t) for s, t in zip(stages[1:], sps[1:])]
    return [out[0]] + [max(1, n) for n in out[1:]]


def format_plan(stages: Sequence[Stage], steps: Sequence[int], budget_min: float | None) -> str:
    """``"60 min: 2,600 steps at 320 (lr 0.03), then 450 at 640 (lr 0.01)"``."""
    parts = [f"{n:,} steps at {s.image_size} (lr {s.learning_rate:g})" for s, n in zip(stages, steps)]
    text = ", then ".join(parts)
    return f"{budget_min:g} min: {text}" if budget_min else text


@dataclasses.dataclass
class Plan:
    """What a run will do, saved as ``plan.json`` in the run directory and read back on resume.

    ``steps[i]`` is the number of steps of stage ``i``; ``spent_seconds`` the training time used so far (all sessions);
    ``seconds_per_step[i]`` the latest measured (or, before its stage ran, estimated) cost of a step of stage ``i``;
    ``trained_stages`` how many leading stages a resumed run finished before (kept as trained, never re-planned)."""

    stages: list[Stage]
    steps: list[int]
    budget_minutes: float
    spent_seconds: float = 0.0
    seconds_per_step: list[float] = dataclasses.field(default_factory=list)
    eval_seconds: float = 0.0
    setup_seconds: float = 0.0
    trained_stages: int = 0

    @property
    def total_steps(self) -> int:
        return sum(self.steps)

    def measured(self, from_stage: int = 0) -> bool:
        """A speed (seconds per step > 0) is known for stage ``from_stage`` and later: they can be fitted to a budget."""
        sps = self.seconds_per_step
        return len(sps) == len(self.stages) and all(x > 0 for x in sps[from_stage:])

    def stage_at(self, step: int) -> int:
        """Index of the stage that global step ``step`` (0-based, the next one to run) belongs to."""
        end = 0
        for i, n in enumerate(self.steps):
            end += n
            if step < end:
                return i
        return len(self.steps) - 1

    def stage_start(self, index: int) -> int:
        return sum(self.steps[:index])

    def describe(self) -> str:
        if self.budget_minutes and not self.measured(self.trained_stages):  # provisional: no speed measured yet
            k = self.trained_stages
            done = [f"{n:,} steps at {s.image_size} (lr {s.learning_rate:g}) trained" for s, n in zip(self.stages[:k], self.steps)]
            rest = sum(s.share for s in self.stages[k:]) or 1.0
            sizes = ", then ".join(done + [f"{s.share / rest:.0%} of the rest at {s.image_size} (lr {s.learning_rate:g})" if k else
                                           f"{s.share:.0%} at {s.image_size} (lr {s.learning_rate:g})" for s in self.stages[k:]])
            return f"{self.budget_minutes:g} min: {sizes}; steps planned from the speed measured in the warm-up"
        return format_plan(self.stages, self.steps, self.budget_minutes or None)

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        return json.dumps(d, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "Plan":
        d = json.loads(text)
        d["stages"] = [Stage(**s) for s in d["stages"]]
        return cls(**d)

    def save(self, path: Path | str) -> Path:
        from mask_od.fileio import write_text_atomic

        return write_text_atomic(path, self.to_json(), overwrite=True)

    def refit(self, stage_index: int, done_in_stage: int, evals_left: int, builds_left: int) -> None:
        """Re-fit the steps of stage ``stage_index`` (``done_in_stage`` steps done) and the later stages to the budget
        left, from the measured seconds per step, evaluation and model-build times. No-op without a budget, or with no
        speed measured yet (the plan stays open-ended until the trainer measures one)."""
        if not self.budget_minutes or not self.measured(stage_index):
            return
        left = self.budget_minutes * 60 - self.spent_seconds
        overhead = evals_left * self.eval_seconds + builds_left * self.setup_seconds
        new = fit_steps(left, self.stages[stage_index:], self.seconds_per_step[stage_index:], overhead, done_in_stage)
        self.steps[stage_index:] = new


def resume_plan(old: Plan | None, stages: Sequence[Stage], steps: int, budget_minutes: float, step: int) -> Plan:
    """The plan of a run resumed at global step ``step`` with the current ``steps`` and ``budget_minutes``, given the
    plan it saved (``old``; None or other stages: a new plan). The stages it finished keep the steps they were trained
    with; the stage it is in (``done`` of its steps run) and the later ones are re-planned from where the run is:

    - without a budget: ``steps`` in all, the part left split by the shares of those stages (a current stage already
      past its share ends now); ``steps <= step``: nothing is left (the current stage ends at ``step``, later ones get 0);
    - with the budget the run had: its steps and measured speeds as saved (re-fitted while it trains);
    - with another budget (or one the run had not): the budget counts all sessions (``spent_seconds``); with measured
      speeds the steps are left to the caller to re-fit (:meth:`Plan.refit`); without, the part left is open-ended
      until the trainer measures the speed. A budget already spent leaves nothing to train."""
    fresh = initial_plan(stages, steps, budget_minutes)
    if old is None or step <= 0 or list(old.stages) != list(stages):
        return fresh
    si = old.stage_at(step)
    done = step - old.stage_start(si)
    kept, rest = list(old.steps[:si]), list(stages[si:])
    plan = Plan(list(stages), [], budget_minutes, old.spent_seconds, [], old.eval_seconds, old.setup_seconds, si)
    budget_left = budget_minutes * 60 - old.spent_seconds
    if not budget_minutes:
        left = steps - sum(kept)
        if steps <= step:
            new = [done] + [0] * (len(rest) - 1)
        else:
            new = split_steps(left, _renormalized(rest))
            if new[0] < done:
                new = [done] + (split_steps(left - done, _renormalized(rest[1:])) if len(rest) > 1 else [])
        plan.steps = kept + new
    elif budget_minutes == old.budget_minutes and old.measured(si):
        plan.steps, plan.seconds_per_step = list(old.steps), list(old.seconds_per_step)
    elif budget_left <= 0:
        plan.steps = kept + [done] + [0] * (len(rest) - 1)
        plan.seconds_per_step = list(old.seconds_per_step) if old.measured(si) else [0.0] * len(stages)
    elif old.measured(si):
        plan.steps, plan.seconds_per_step = kept + [done] + [1] * (len(rest) - 1), list(old.seconds_per_step)
    else:
        open_ended = split_steps(OPEN_ENDED_STEPS, _renormalized(rest))
        plan.steps = kept + [done + open_ended[0]] + open_ended[1:]
        plan.seconds_per_step = [0.0] * len(stages)
    return plan


def _renormalized(stages: Sequence[Stage]) -> list[Stage]:
    total = sum(s.share for s in stages) or 1.0
    return [dataclasses.replace(s, share=s.share / total) for s in stages]


def initial_plan(stages: Sequence[Stage], steps: int, budget_minutes: float) -> Plan:
    """Without a budget: ``steps`` split by share. With one: a provisional open-ended split, re-fitted to the budget
    once speed is measured (``steps`` is not used)."""
    if not budget_minutes:
        return Plan(list(stages), split_steps(steps, stages), 0.0)
    # open-ended until the first measurement (10 steps into the first stage) fits it to the budget
    return Plan(list(stages), split_steps(OPEN_ENDED_STEPS, stages), budget_minutes, seconds_per_step=[0.0] * len(stages))


def plan_intervals(total_steps: int) -> dict[str, int]:
    """Evaluation, checkpoint and log intervals and warm-up for a plan of ``total_steps``: every third, sixth and
    fifteenth of it, warm-up a fifth (at most 100 steps); each >= 1 (warm-up >= 0)."""
    return {"eval_every": max(total_steps // 3, 1), "checkpoint_every": max(total_steps // 6, 1),
            "log_every": max(total_steps // 15, 1), "warmup_steps": min(100, total_steps // 5)}


def make_stage_schedule(peak: float, warmup_steps: int, start_step, total_steps, alpha: float = 0.01):
    """A tf_keras learning-rate schedule for one stage: linear warmup from ``peak / 10`` over ``warmup_steps`` steps
    (at most a fifth of the stage), then cosine decay to ``alpha * peak`` at the stage's end. ``start_step``,
    ``total_steps`` (and ``warmup_steps``, an int or one) are ``tf.Variable``s so a re-fitted plan changes the schedule
    without retracing. tf_keras calls it with ``optimizer.iterations``,
    which must therefore count global steps (the trainer sets it at each stage start); before ``start_step`` the
    rate is held at the warmup's first value, never negative."""
    import tensorflow as tf
    import tf_keras

    class StageSchedule(tf_keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            s = tf.maximum(tf.cast(step, tf.float32) - tf.cast(start_step, tf.float32), 0.0)
            n = tf.maximum(tf.cast(total_steps, tf.float32), 1.0)
            w = tf.minimum(tf.maximum(tf.cast(warmup_steps, tf.float32), 0.0), tf.floor(n / 5.0))
            warm = peak * (0.1 + 0.9 * s / tf.maximum(w, 1.0))
            progress = tf.clip_by_value((s - w) / tf.maximum(n - w, 1.0), 0.0, 1.0)
            cosine = peak * (alpha + (1 - alpha) * 0.5 * (1 + tf.cos(math.pi * progress)))
            return tf.where(s < w, warm, cosine)

        def get_config(self):
            return {"peak": peak, "warmup_steps": int(warmup_steps if isinstance(warmup_steps, int) else warmup_steps.numpy())}

    return StageSchedule()
