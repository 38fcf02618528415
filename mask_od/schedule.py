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
    more step and the later stages split what is left; each later stage keeps at least one step."""
    budget = max(0.0, seconds_left - overhead_seconds)
    sps = [max(x, 1e-6) for x in seconds_per_step]
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
    ``seconds_per_step[i]`` the latest measured (or, before its stage ran, estimated) cost of a step of stage ``i``."""

    stages: list[Stage]
    steps: list[int]
    budget_minutes: float
    spent_seconds: float = 0.0
    seconds_per_step: list[float] = dataclasses.field(default_factory=list)
    eval_seconds: float = 0.0
    setup_seconds: float = 0.0

    @property
    def total_steps(self) -> int:
        return sum(self.steps)

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
        if self.budget_minutes and not any(self.seconds_per_step):  # provisional: no speed measured yet
            sizes = ", then ".join(f"{s.share:.0%} at {s.image_size} (lr {s.learning_rate:g})" for s in self.stages)
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
        left, from the measured seconds per step, evaluation and model-build times. No-op without a budget."""
        if not self.budget_minutes:
            return
        left = self.budget_minutes * 60 - self.spent_seconds
        overhead = evals_left * self.eval_seconds + builds_left * self.setup_seconds
        new = fit_steps(left, self.stages[stage_index:], self.seconds_per_step[stage_index:], overhead, done_in_stage)
        self.steps[stage_index:] = new


def initial_plan(stages: Sequence[Stage], steps: int, budget_minutes: float) -> Plan:
    """Without a budget: ``steps`` split by share. With one: a provisional open-ended split, re-fitted to the budget
    once speed is measured (``steps`` is not used)."""
    if not budget_minutes:
        return Plan(list(stages), split_steps(steps, stages), 0.0)
    # open-ended until the first measurement (10 steps into the first stage) fits it to the budget
    return Plan(list(stages), split_steps(OPEN_ENDED_STEPS, stages), budget_minutes, seconds_per_step=[0.0] * len(stages))


def make_stage_schedule(peak: float, warmup_steps: int, start_step, total_steps, alpha: float = 0.01):
    """A tf_keras learning-rate schedule for one stage: linear warmup from ``peak / 10`` over ``warmup_steps`` steps
    (at most a fifth of the stage), then cosine decay to ``alpha * peak`` at the stage's end. ``start_step`` and ``total_steps`` are ``tf.Variable``s
    so a re-fitted plan changes the schedule without retracing. tf_keras calls it with ``optimizer.iterations``,
    which must therefore count global steps (the trainer sets it at each stage start); before ``start_step`` the
    rate is held at the warmup's first value, never negative."""
    import tensorflow as tf
    import tf_keras

    class StageSchedule(tf_keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            s = tf.maximum(tf.cast(step, tf.float32) - tf.cast(start_step, tf.float32), 0.0)
            n = tf.maximum(tf.cast(total_steps, tf.float32), 1.0)
            w = tf.minimum(float(max(0, warmup_steps)), tf.floor(n / 5.0))
            warm = peak * (0.1 + 0.9 * s / tf.maximum(w, 1.0))
            progress = tf.clip_by_value((s - w) / tf.maximum(n - w, 1.0), 0.0, 1.0)
            cosine = peak * (alpha + (1 - alpha) * 0.5 * (1 + tf.cos(math.pi * progress)))
            return tf.where(s < w, warm, cosine)

        def get_config(self):
            return {"peak": peak, "warmup_steps": warmup_steps}

    return StageSchedule()
