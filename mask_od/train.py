"""Training in one process: stages of input sizes, a time budget planned from measured speed, augmentation,
checkpoints N deep with resume (Ctrl-C saves one), TensorBoard, periodic COCO evaluation at the final size, best kept."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Callable

from mask_od.config import Config
from mask_od.errors import MaskODError
from mask_od.label_map import num_classes as label_map_classes
from mask_od.label_map import name_to_id, read_label_map
from mask_od.runtime import SigintScope


class TrainingError(MaskODError, RuntimeError):
    """Training stopped for a reason the message explains (NaN loss, out of memory, mismatched checkpoint)."""


class TrainingInterrupted(TrainingError):
    """Ctrl-C: a checkpoint of the current step was saved; the message says how to resume."""


@dataclasses.dataclass
class TrainResult:
    run_dir: Path
    step: int
    latest_checkpoint: str
    best_checkpoint: str | None
    best_map50: float | None
    history: list[dict]  # one entry per evaluation: step, minutes, mAP, mAP50, per-class AP50
    images_per_second: float


def build_strategy(name: str):
    import tensorflow as tf

    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        cpus = tf.config.list_logical_devices("CPU")
        # all local GPUs; without GPUs, all logical CPU devices (one unless split with set_logical_device_configuration)
        return tf.distribute.MirroredStrategy(devices=[d.name for d in gpus or cpus])
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    return tf.distribute.get_strategy()


def _loss_task(num_classes: int):
    """Model Garden's RetinaNet task, used for its loss (focal + Huber box loss normalized by positives)."""
    from official.vision.configs import retinanet as rcfg
    from official.vision.tasks.retinanet import RetinaNetTask

    return RetinaNetTask(rcfg.RetinaNetTask(model=rcfg.RetinaNet(num_classes=num_classes + 1)))


def _has_gpu() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def train(config: Config, progress: bool = True, on_eval: Callable[[dict], None] | None = None) -> TrainResult:
    """Train (or resume) the detector described by ``config`` in ``config.output_dir``; returns what it made.
    ``mixed_precision`` (on a GPU) computes in float16 with dynamic loss scaling; the float32 policy is restored after."""
    import tf_keras

    mixed = config.mixed_precision and _has_gpu()
    if not mixed:
        return _train(config, progress, on_eval, mixed=False)
    previous = tf_keras.mixed_precision.global_policy()
    tf_keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        return _train(config, progress, on_eval, mixed=True)
    finally:
        tf_keras.mixed_precision.set_global_policy(previous)


def check_inputs(config: Config) -> None:
    """Every file the run reads exists before anything is written or built (records, label map, init checkpoint), and
    no output lands on one of them."""
    from mask_od.input_pipeline import require_examples

    if not Path(config.label_map).is_file():
        raise TrainingError(f"{config.label_map}: label map not found (label_map)")
    for key in ("train_records", "val_records"):
        value = getattr(config, key)
        if value:
            try:
                require_examples(value)  # every record read once: an empty, foreign or cut-short file is named here
            except FileNotFoundError as e:
                raise TrainingError(f"{key}: {e}") from None
    from mask_od.fileio import refuse_outputs_on_inputs
    from mask_od.runs import DATA_FILE, is_run_dir

    pretrained = config.pretrained if Path(config.pretrained).exists() else None
    refuse_outputs_on_inputs({"output_dir": config.output_dir}, [("pretrained", pretrained), ("init_checkpoint", config.init_checkpoint),
                             ("label_map", config.label_map), ("train_records", config.train_records)], replaces=False)
    out = Path(config.output_dir)
    if not config.output_dir.strip() or not out.name.strip():  # a blank name is made absolute by build_config
        raise TrainingError(f"output_dir {config.output_dir!r} is blank: name the folder the run goes to (e.g. workspace/models/my_run)")
    from mask_od.fileio import OutputPathError, refuse_file_in_path

    try:
        refuse_file_in_path(out)
    except OutputPathError as e:
        raise TrainingError(f"output_dir {e}") from None
    if out.is_dir() and not (out / DATA_FILE).is_file() and not is_run_dir(out) and (held := sorted(x.name for x in out.iterdir())):
        raise TrainingError(f"{out}: output_dir holds files that are not a training run ({', '.join(held[:5])}"
                            f"{', …' if len(held) > 5 else ''}): a run writes config.yaml, label_map.pbtxt, train_log.jsonl "
                            "and more there; choose a new or empty folder")
    if config.init_checkpoint and not Path(config.init_checkpoint).exists() and not Path(config.init_checkpoint + ".index").exists():
        raise TrainingError(f"{config.init_checkpoint}: init_checkpoint not found")
    if config.init_checkpoint:
        from mask_od.runs import source_config

        if (made := source_config(config.init_checkpoint)) is None:
            print(f"init_checkpoint {config.init_checkpoint}: no config.yaml of its run or package beside it, so its "
                  f"backbone and anchors are not checked: they must be this config's ({config.backbone}, anchor_size "
                  f"{config.anchor_size}, anchor_aspect_ratios {config.anchor_aspect_ratios})", flush=True)
        else:
            wrong = [f"{k} {getattr(made, k)!r} (this config: {getattr(config, k)!r})"
                     for k in ANCHOR_KEYS if getattr(made, k) != getattr(config, k)]
            if wrong:  # same tensor shapes can hide other anchors: the weights would load and detect nonsense
                raise TrainingError(f"{config.init_checkpoint}: init_checkpoint was trained with {'; '.join(wrong)}; set "
                                    f"{' and '.join(w.split()[0] for w in wrong)} to its values, or start from another checkpoint")
    from mask_od.shipped import is_packaged

    if is_packaged(config.pretrained) and not config.init_checkpoint:
        from mask_od.transfer import check_packaged

        check_packaged(config)  # sha256, backbone and anchors, before the run directory is written
    elif (config.pretrained.lower() not in ("imagenet", "", "none", "null") and not config.init_checkpoint
          and not (out / "checkpoints" / "checkpoint").is_file()):  # read only when a run starts, not when it resumes
        from mask_od.weights import WeightsError, resolve_pretrained

        try:
            resolve_pretrained(config.pretrained, config.backbone)  # a weights file must exist (imagenet: fetched later)
        except WeightsError as e:
            raise TrainingError(f"pretrained: {e}") from None


ANCHOR_KEYS = ("backbone", "anchor_size", "anchor_aspect_ratios")  # a checkpoint made with others does not fit the model
MODEL_KEYS = (*ANCHOR_KEYS, "stages")  # what a checkpoint's weights were trained for: fixed on resume


def check_resume(config: Config, run_dir: Path, label_map: dict, train_identity: dict | None = None) -> None:
    """Refuse to resume a run with another label map or model, or (given ``train_identity``, see
    :func:`mask_od.runs.records_identity`) with other training records or settings (before anything in the run is
    written)."""
    from mask_od.config import build_config

    if not (run_dir / "checkpoints" / "checkpoint").is_file():
        return
    saved_lm = run_dir / "label_map.pbtxt"
    if saved_lm.is_file():
        old = read_label_map(saved_lm)
        if old != label_map:
            raise TrainingError(f"{run_dir} was trained with the label map {old} and {config.label_map} is {label_map}: "
                                "a run resumes only with its own classes; choose a new output_dir (and init_checkpoint="
                                f"{run_dir} to fine-tune from it)")
    if (run_dir / "config.yaml").is_file():
        old_cfg = build_config(run_dir / "config.yaml")
        changed = [k for k in MODEL_KEYS if getattr(old_cfg, k) != getattr(config, k)]
        diff = [f"{k}: {getattr(old_cfg, k)!r} -> {getattr(config, k)!r}" for k in changed]
        if not config.stages and old_cfg.image_size != config.image_size:
            diff.append(f"image_size: {old_cfg.image_size} -> {config.image_size}")
        if diff:
            start = ("its weights do not fit other anchors or another backbone: start from pretrained: imagenet"
                     if set(changed) & set(ANCHOR_KEYS) else f"init_checkpoint={run_dir} to start from its weights")
            raise TrainingError(f"{run_dir}: cannot resume with another model ({'; '.join(diff)}); choose a new "
                                f"output_dir ({start})")
    if train_identity is not None:
        from mask_od.runs import resume_differences

        if diff := resume_differences(config, run_dir, train_identity):
            raise TrainingError(f"{run_dir} holds a run on other data or settings ({'; '.join(diff)}): a run resumes only "
                                "with its own; choose a new output_dir (the notebook picks one by itself)")


def _train(config: Config, progress: bool, on_eval: Callable[[dict], None] | None, mixed: bool) -> TrainResult:
    """The strategy first (``MultiWorkerMirroredStrategy`` must start before any other TensorFlow op), then the run; a
    worker other than the chief trains in a scratch copy of the run directory, removed at the end."""
    import shutil

    if config.strategy == "multi_worker" and config.time_budget_min:
        raise TrainingError("strategy=multi_worker: every worker must run the same steps, and their clocks differ; set "
                            "steps instead of time_budget_min")
    strategy = build_strategy(config.strategy)
    scratch = None if is_chief(strategy) else _worker_scratch(config)
    try:
        return _train_with(dataclasses.replace(config, output_dir=str(scratch)) if scratch else config, strategy, progress,
                           on_eval, mixed)
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)


def is_chief(strategy) -> bool:
    """True unless ``strategy`` is multi-worker and this process is not its chief (task ``chief``, else ``worker`` 0):
    only the chief writes the run directory; the others write the same files to a scratch folder, as all workers must
    take part in saving a checkpoint."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    if resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in resolver.cluster_spec().as_dict()


def _worker_scratch(config: Config) -> Path:
    """A scratch folder for a non-chief worker holding what a resume reads from the run directory (a shared disk, or a
    copy on each machine): checkpoints, best, plan, config, label map and data.json (which marks the folder as a run)."""
    import shutil
    import tempfile

    run_dir, scratch = Path(config.output_dir), Path(tempfile.mkdtemp(prefix="mask_od-worker-"))
    for name in ("checkpoints", "best"):
        if (run_dir / name).is_dir():
            shutil.copytree(run_dir / name, scratch / name)
    for name in ("plan.json", "config.yaml", "label_map.pbtxt", "data.json"):
        if (run_dir / name).is_file():
            shutil.copyfile(run_dir / name, scratch / name)
    return scratch


def _train_with(config: Config, strategy, progress: bool, on_eval: Callable[[dict], None] | None, mixed: bool) -> TrainResult:
    import tensorflow as tf
    import tf_keras

    from mask_od.callbacks import ConsoleLogger, EvaluateAndKeepBest, JsonlLogger, TensorBoardLogger, trim_jsonl
    from mask_od.fileio import write_bytes_atomic
    from mask_od.input_pipeline import check_record_labels
    from mask_od.schedule import parse_stages

    tf_keras.utils.set_random_seed(config.seed)
    run_dir = Path(config.output_dir)
    label_map = read_label_map(config.label_map)
    check_inputs(config)
    class_weights = class_weight_vector(config, label_map)
    from mask_od.runs import DATA_FILE, records_identity

    identity = {"train_records": records_identity(config.train_records)}
    check_resume(config, run_dir, label_map, identity["train_records"])  # before anything in the run is written
    for records in (config.train_records, config.val_records):  # written with this label map (ids and class text)
        if records:
            check_record_labels(records, label_map, f"label_map {config.label_map}")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(run_dir / DATA_FILE, json.dumps(identity, indent=1).encode(), overwrite=True)
    config.save(run_dir / "config.yaml")
    write_bytes_atomic(run_dir / "label_map.pbtxt", Path(config.label_map).read_bytes(), overwrite=True)
    if progress and config.strategy == "default" and not _has_gpu():
        print("no GPU found: training on the CPU", flush=True)
    if config.strategy != "default" or mixed:
        print(f"{type(strategy).__name__}: {strategy.num_replicas_in_sync} replica(s), global batch "
              f"{config.batch_size * strategy.num_replicas_in_sync}" + ("; mixed_float16 with loss scaling" if mixed else ""), flush=True)
    stages = parse_stages(config.stages, config.image_size, config.learning_rate)
    latest = tf.train.latest_checkpoint(str(run_dir / "checkpoints"))
    plan = _load_plan(config, stages, run_dir, _checkpoint_step(latest) if latest else 0)
    config = plan_config(config, plan)  # auto_intervals: evaluation, checkpoint, log and warm-up steps from the plan
    loggers = [JsonlLogger(run_dir, config.log_every), TensorBoardLogger(run_dir, config.log_every)]
    loggers += [ConsoleLogger(config.log_every)] if progress else []
    evaluator = EvaluateAndKeepBest(config, label_map, label_map_classes(label_map), plan, loggers, on_eval)
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
    clock = _Clock(plan, config, config.batch_size * strategy.num_replicas_in_sync, loggers)
    parts = None
    with _StopOnCtrlC():
        for si in range(plan.stage_at(_checkpoint_step(latest)) if latest else 0, len(stages)):
            clock.building()  # a stage's cost starts with its model build, which later stages pay again
            parts = _build_stage(clock.config, stages, si, plan, strategy, step, label_map, mixed, fresh=latest is None,
                                 class_weights=class_weights)
            if parts.restored and clock.session_step0 is None:
                print(f"resumed from {parts.restored} at step {int(step.numpy())}", flush=True)
                trim_jsonl(run_dir / "train_log.jsonl", int(step.numpy()))
                evaluator.forget_after(int(step.numpy()))
            _run_stage(config, si, stages, plan, parts, step, clock, loggers + [evaluator], evaluator)
            latest = parts.manager.latest_checkpoint
    clock.stop()
    plan.save(run_dir / "plan.json")
    for cb in loggers:
        cb.on_end()
    best = evaluator.best["mAP50"]
    return TrainResult(run_dir, int(step.numpy()), parts.manager.latest_checkpoint, tf.train.latest_checkpoint(str(run_dir / "best")),
                       best if best >= 0 else None, evaluator.history, clock.ips)


def _load_plan(config: Config, stages, run_dir: Path, step: int):
    """The plan of a new run, or of one resumed at global ``step`` (:func:`mask_od.schedule.resume_plan`: finished
    stages kept as trained, the rest re-planned from ``step`` for the current ``steps`` / ``time_budget_min``, re-fitted
    at once when the budget changed and speeds were measured). A resumed plan is printed and saved before training."""
    from mask_od.schedule import Plan, resume_plan

    old = None
    if step and (run_dir / "plan.json").is_file():
        old = Plan.from_json((run_dir / "plan.json").read_text())
    plan = resume_plan(old, stages, config.steps, config.time_budget_min, step)
    if plan.budget_minutes and not plan.eval_seconds and config.val_records:
        from mask_od.input_pipeline import record_classes

        plan.eval_seconds = len(record_classes(config.val_records)) * 0.05 + 5.0  # until the first evaluation is timed
    if old is None:
        return plan
    si = plan.stage_at(step)
    if plan.budget_minutes != old.budget_minutes and plan.measured(si) and plan.budget_minutes * 60 > plan.spent_seconds:
        refit_with_evaluations(plan, config, si, step - plan.stage_start(si), step)
    spent = f" ({plan.spent_seconds / 60:.1f} min spent)" if plan.budget_minutes else ""
    if plan.total_steps <= step:
        why = (f"time_budget_min={plan.budget_minutes:g} used{spent}" if plan.budget_minutes else f"steps={config.steps}")
        print(f"nothing to train: the run is at step {step} and {why}; raise "
              f"{'time_budget_min' if plan.budget_minutes else 'steps'} to train on", flush=True)
    else:
        print(f"resuming at step {step}{spent}; plan: {plan.describe()}", flush=True)
    plan.save(run_dir / "plan.json")
    return plan


@dataclasses.dataclass
class _StageParts:
    model: object
    optimizer: object
    lr: object
    total_steps: object  # tf.Variable: the stage's planned steps, re-fitted under a time budget
    warmup: object  # tf.Variable: its warm-up steps (follow the re-fitted plan with auto_intervals)
    manager: object
    train_step: Callable
    batches: object  # iterator over (images, labels) of the stage's size
    restored: str | None
    strategy: object
    averaged: "AveragedWeights"  # the moving-average weights swapped in for evaluation (a no-op without EMA)


def _build_stage(config: Config, stages, si: int, plan, strategy, step, label_map: dict, mixed: bool, fresh: bool,
                 class_weights: list[float] | None = None) -> _StageParts:
    """Model at the stage's input size, its optimizer and schedule, checkpoints restored (the optimizer too when the
    checkpoint was written in this stage; weights only from an earlier stage); a new run starts from ``init_checkpoint``,
    a packaged detector (``pretrained: face_mask``) or backbone weights with a BatchNorm warm start of FPN and head."""
    import tensorflow as tf
    import tf_keras

    from mask_od.input_pipeline import build_train_dataset
    from mask_od.model import AnchorSpec, build_model, warm_start_batch_norm
    from mask_od.schedule import make_stage_schedule
    from mask_od.shipped import is_packaged

    num_classes = label_map_classes(label_map)
    detector_init = is_packaged(config.pretrained) and not config.init_checkpoint

    stage = stages[si]
    stage_cfg = dataclasses.replace(config, image_size=stage.image_size, learning_rate=stage.learning_rate)
    anchors = AnchorSpec.from_config(stage_cfg)  # one spec for the model's head and the parser's anchor labels
    with strategy.scope():
        model = build_model(stage_cfg, num_classes, load_pretrained=fresh and si == 0 and not config.init_checkpoint, anchors=anchors)
        start = tf.Variable(plan.stage_start(si), dtype=tf.int64, trainable=False)
        total = tf.Variable(plan.steps[si], dtype=tf.int64, trainable=False)
        warmup = tf.Variable(config.warmup_steps, dtype=tf.int64, trainable=False)
        lr = make_stage_schedule(stage.learning_rate, warmup, start, total)
        optimizer = _make_optimizer(config, lr, model, plan.stage_start(si))
        if mixed:
            optimizer = tf_keras.mixed_precision.LossScaleOptimizer(optimizer)
        ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step)
    manager = tf.train.CheckpointManager(ckpt, str(Path(config.output_dir) / "checkpoints"), max_to_keep=config.keep_checkpoints)
    restored = _restore_latest(manager, lambda p: ckpt if _checkpoint_step(p) > plan.stage_start(si) else tf.train.Checkpoint(model=model, step=step))
    if restored is None and si == 0 and config.init_checkpoint:
        from mask_od.runs import RunError, restore_weights

        try:
            print(f"initialised from {restore_weights(model, config.init_checkpoint)}", flush=True)
        except RunError as e:
            raise TrainingError(str(e)) from None
    if restored is None and si == 0 and fresh and detector_init:
        from mask_od.transfer import init_from_packaged

        print(init_from_packaged(model, stage_cfg, label_map), flush=True)
    optimizer.iterations.assign(step)  # tf_keras evaluates the schedule at optimizer.iterations: count global steps
    batch = config.batch_size * strategy.num_replicas_in_sync
    data = build_train_dataset(stage_cfg, batch_size=batch, anchors=anchors)
    options = tf.data.Options()  # every worker reads all records and keeps its part of each global batch
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    data = data.with_options(options)
    if int(step.numpy()) == 0 and not config.init_checkpoint and not detector_init:
        warm_start_batch_norm(model, next(iter(data))[0][: config.batch_size])
    train_step = _make_train_step(model, optimizer, _loss_task(num_classes), strategy, strategy.num_replicas_in_sync, mixed,
                                  class_weights)
    return _StageParts(model, optimizer, lr, total, warmup, manager, train_step, iter(strategy.experimental_distribute_dataset(data)),
                       restored, strategy, AveragedWeights(optimizer, model))


def _make_optimizer(config: Config, lr, model, stage_start: int):
    """SGD with momentum 0.9; with ``ema_decay`` wrapped in Model Garden's ``ExponentialMovingAverage`` (which needs the
    legacy SGD) over the model's trainable weights, its decay ramped from 0.1 to ``ema_decay`` from ``stage_start`` on
    (a stage builds a new model from the last one's raw weights)."""
    import tf_keras

    if not config.ema_decay:
        return tf_keras.optimizers.SGD(learning_rate=lr, momentum=0.9)
    from official.modeling.optimization.ema_optimizer import ExponentialMovingAverage

    optimizer = ExponentialMovingAverage(tf_keras.optimizers.legacy.SGD(learning_rate=lr, momentum=0.9),
                                         average_decay=config.ema_decay, start_step=stage_start, dynamic_decay=True)
    optimizer.shadow_copy(model)
    return optimizer


class AveragedWeights:
    """Context manager: ``model`` holds its moving-average weights inside, its raw weights again after (each trainable
    variable swapped with the EMA optimizer's ``average`` slot; Model Garden's ``swap_weights`` wants a distribution
    strategy's cross-replica context, which the default strategy never enters). Without EMA it changes nothing."""

    def __init__(self, optimizer, model):
        inner = getattr(optimizer, "inner_optimizer", optimizer)  # below a LossScaleOptimizer
        self.optimizer = inner if getattr(inner, "has_shadow_copy", False) else None
        self.model = model

    @property
    def active(self) -> bool:
        return self.optimizer is not None

    def _swap(self) -> None:
        for var in self.model.trainable_variables:
            average = self.optimizer.get_slot(var, "average")
            raw = var.read_value()
            var.assign(average)
            average.assign(raw)

    def __enter__(self):
        if self.optimizer is not None:
            self._swap()
        return self

    def __exit__(self, *exc):
        if self.optimizer is not None:
            self._swap()
        return False


def _run_stage(config: Config, si: int, stages, plan, parts: _StageParts, step, clock: "_Clock", callbacks, evaluator) -> None:
    """Train stage ``si`` to its planned end (re-fitted under a time budget); Ctrl-C saves a checkpoint and stops."""
    import tensorflow as tf

    stage, run_dir = stages[si], Path(config.output_dir)
    end = lambda: plan.stage_start(si) + plan.steps[si]  # noqa: E731 - moves when the plan is re-fitted
    clock.start_stage(si, int(step.numpy()), evaluator)
    for cb in callbacks:
        cb.on_stage_start(si, stage, plan)
    try:
        while int(step.numpy()) < end():
            images, labels = next(parts.batches)
            try:
                losses = {k: float(v) for k, v in parts.train_step(images, labels).items()}
            except tf.errors.ResourceExhaustedError:
                raise TrainingError(f"out of memory at step {int(step.numpy())} with batch_size={config.batch_size}, image_size="
                                    f"{stage.image_size}: lower batch_size (or image_size), or mixed_precision=true on a GPU") from None
            step.assign_add(1)
            s = int(step.numpy())
            if not math.isfinite(losses["total"]):
                raise TrainingError(f"loss is {losses['total']} at step {s}: lower learning_rate (now {stage.learning_rate}) "
                                    "or raise warmup_steps; check the TFRecords for empty or inverted boxes")
            clock.tick(s, parts, stages)
            last = s >= end()
            info = clock.info(s, last) | {"lr": float(parts.lr(step)), "image_size": stage.image_size, "model": parts.model,
                                          "averaged": parts.averaged,
                                          "evaluate": bool(config.val_records) and (s in clock.evals or (last and si == len(stages) - 1)),
                                          "final": s >= plan.total_steps}
            if clock.first_of_session(s):
                local = lambda x: parts.strategy.experimental_local_results(x)[0]  # noqa: E731 - first replica's images
                info["batch"] = (local(images), tf.nest.map_structure(local, labels))
            if s % clock.config.checkpoint_every == 0 or last:
                parts.manager.save(checkpoint_number=s)
                plan.save(run_dir / "plan.json")
            if last and si == len(stages) - 1 and info["averaged"].active:  # what export and transfer read without best/
                with info["averaged"]:
                    tf.train.CheckpointManager(tf.train.Checkpoint(model=parts.model, step=step), str(run_dir / "averaged"),
                                               max_to_keep=1).save(checkpoint_number=s)
            for cb in callbacks:
                cb.on_step(s, losses, info)
            if _StopOnCtrlC.seen:
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        s = int(step.numpy())
        parts.manager.save(checkpoint_number=s)
        clock.stop()
        plan.save(run_dir / "plan.json")
        for cb in callbacks:
            cb.on_end()
        raise TrainingInterrupted(f"interrupted at step {s}: checkpoint saved in {run_dir / 'checkpoints'}; resume with "
                                  f"python scripts/train.py {run_dir / 'config.yaml'}") from None


class _StopOnCtrlC(SigintScope):
    """While training, the first Ctrl-C (SIGINT) only asks the loop to stop after the current step; the loop then saves
    a checkpoint and raises :class:`TrainingInterrupted`. A KeyboardInterrupt raised by Python's own handler can land
    in a finalizer, where it is printed and ignored, and training went on (seen as a hung Ctrl-C test). A second
    Ctrl-C interrupts at once. Outside the main thread (no signal handlers there) it does nothing."""

    def _handle(self, frame) -> None:
        import signal

        print("Ctrl-C: stopping after this step and saving a checkpoint (Ctrl-C again to stop at once)", flush=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)


class _Clock:
    """Time of the run: training seconds over all sessions (``plan.spent_seconds``), the cost of starting a stage,
    seconds per step measured every 10 steps (evaluations left out), images per second, ETA; with a time budget it
    re-fits the plan from those measurements and ends the last stage when only the final evaluation still fits."""

    def __init__(self, plan, config: Config, global_batch: int, loggers=()):
        self.plan, self.config, self.batch, self.loggers = plan, config, global_batch, loggers
        self.t0, self.spent0 = time.perf_counter(), plan.spent_seconds
        self.session_step0 = self.build_t0 = None
        self.ips, self.evals = 0.0, _eval_steps(config, plan)

    def building(self) -> None:
        """A stage's model, data and checkpoint restore are being built now: its start-up cost counts from here."""
        self.build_t0 = time.perf_counter()

    def start_stage(self, si: int, step: int, evaluator) -> None:
        t0 = self.build_t0 if self.build_t0 is not None else time.perf_counter()
        self.si, self.stage_t0, self.stage_step0, self.evaluator, self.build_t0 = si, t0, step, evaluator, None
        self.session_step0 = step if self.session_step0 is None else self.session_step0
        self.measured_from = None
        self.window = (time.perf_counter(), step)

    def first_of_session(self, s: int) -> bool:
        return s == self.session_step0 + 1

    def stop(self) -> None:
        self.plan.spent_seconds = self.spent0 + (time.perf_counter() - self.t0)

    def tick(self, s: int, parts: _StageParts, stages) -> None:
        from mask_od.schedule import relative_step_cost

        now, plan, si = time.perf_counter(), self.plan, self.si
        plan.spent_seconds = self.spent0 + (now - self.t0)
        done = s - plan.stage_start(si)
        if s - self.stage_step0 == 3:  # model build, data, restore, tracing and the first steps: the cost of a stage start
            plan.setup_seconds = now - self.stage_t0
            self.measured_from = (now, s, self.evaluator.seconds)
        elif self.measured_from and (s - self.measured_from[1]) % 10 == 0 and plan.budget_minutes:
            t, s0, ev0 = self.measured_from
            sps = max((now - t - (self.evaluator.seconds - ev0)) / (s - s0), 1e-6)
            plan.seconds_per_step[si:] = [sps * relative_step_cost(x.image_size, stages[si].image_size) for x in stages[si:]]
            if si == len(stages) - 1 and plan.spent_seconds + plan.eval_seconds >= plan.budget_minutes * 60:
                plan.steps[si] = done  # out of time: this was the last step; the final evaluation follows
                print(f"time budget used: training ends at step {s}, then the final evaluation", flush=True)
            else:
                refit_with_evaluations(plan, self.config, si, done, s)
                if s - s0 == 10:
                    print(f"plan from measured speed ({sps:.2f} s/step at {stages[si].image_size}px): {plan.describe()}", flush=True)
            parts.total_steps.assign(plan.steps[si])
            if self.config.auto_intervals:
                self.config = plan_config(self.config, plan)
                parts.warmup.assign(self.config.warmup_steps)
                for cb in self.loggers:
                    cb.every = self.config.log_every
            self.evals = _eval_steps(self.config, plan)
        if s % self.config.log_every == 0:
            t, s0 = self.window
            self.ips = (s - s0) * self.batch / max(now - t, 1e-9)
            self.window = (now, s)

    def info(self, s: int, last: bool) -> dict:
        plan = self.plan
        if plan.budget_minutes:
            eta = plan.budget_minutes * 60 - plan.spent_seconds
        else:
            eta = (time.perf_counter() - self.t0) / max(1, s - self.session_step0) * (plan.total_steps - s)
        return {"minutes": plan.spent_seconds / 60, "ips": self.ips, "total_steps": plan.total_steps, "last": last,
                "eta_seconds": eta}


def _checkpoint_step(path: str) -> int:
    return int(path.rsplit("-", 1)[1])


def _restore_latest(manager, target_for: Callable[[str], object]) -> str | None:
    """Restore the newest readable checkpoint into ``target_for(path)`` (a full checkpoint, or model and step only);
    a corrupt one (its .index or .data file damaged or cut short) is skipped with a warning. Returns the path, None when
    there is none."""
    import tensorflow as tf

    from mask_od.runs import DAMAGED_CHECKPOINT_ERRORS

    for path in reversed(manager.checkpoints):
        try:
            target = target_for(path)
            (target.restore if target is manager.checkpoint else target.read)(path).expect_partial()
            return path
        except (tf.errors.OpError, ValueError, AssertionError, *DAMAGED_CHECKPOINT_ERRORS) as e:  # a bad .index or .data
            print(f"warning: {path} cannot be read ({str(e).splitlines()[0][:120]}); trying the previous checkpoint", flush=True)
    if manager.checkpoints:
        raise TrainingError(f"{manager.directory}: none of the checkpoints {manager.checkpoints} can be read")
    return None


def refit_with_evaluations(plan, config: Config, si: int, done: int, step: int) -> None:
    """Re-fit ``plan`` from stage ``si`` (``done`` of its steps run, global step ``step``) to its time budget, counting
    the evaluations of the re-fitted plan itself: the steps decide how many evaluations fall before the end and the
    evaluations take time from the steps, so the count is iterated to a fixed point (a handful of rounds; counting
    them on the open-ended first plan charged a thousand evaluations and left 14 steps of a 60-minute budget)."""
    evals_left = 1
    for _ in range(8):
        plan.refit(si, done, evals_left, len(plan.steps) - si - 1)
        now = max(1, len([e for e in _eval_steps(plan_config(config, plan), plan) if e > step]))
        if now == evals_left:
            return
        evals_left = now


def plan_config(config: Config, plan) -> Config:
    """``config`` with ``eval_every``, ``checkpoint_every``, ``log_every`` and ``warmup_steps`` derived from ``plan``'s
    total steps (:func:`mask_od.schedule.plan_intervals`) when ``auto_intervals`` is set; else ``config`` itself."""
    if not config.auto_intervals:
        return config
    from mask_od.schedule import plan_intervals

    return dataclasses.replace(config, **plan_intervals(plan.total_steps))


def _eval_steps(config: Config, plan) -> list[int]:
    """Global steps after which the run evaluates: every ``eval_every``, at each stage end and at the last step."""
    if not config.val_records:
        return []
    ends = {plan.stage_start(i + 1) for i in range(len(plan.steps))}
    every = set(range(config.eval_every, plan.total_steps + 1, config.eval_every)) if config.eval_every else set()
    return sorted(s for s in every | ends if s <= plan.total_steps)


def class_weight_vector(config: Config, label_map: dict[int, str]) -> list[float] | None:
    """``config.class_weights`` as a weight per class id (index 0 the background, 1.0), or None when unset;
    a name the label map lacks raises :class:`TrainingError` naming the known ones."""
    from mask_od.config import parse_class_weights

    named = parse_class_weights(config.class_weights)
    if not named:
        return None
    ids = name_to_id(label_map)
    unknown = [n for n in named if n not in ids]
    if unknown:
        raise TrainingError(f"class_weights names {unknown}, not in {config.label_map} (classes: {sorted(ids)})")
    out = [1.0] * (label_map_classes(label_map) + 1)
    for name, w in named.items():
        out[ids[name]] = w
    return out


def weight_classes(labels: dict, class_weights: list[float]) -> dict:
    """RetinaNet labels whose per-anchor ``cls_weights`` [B, N] are scaled by the weight of each anchor's target
    class (background 0 and ignored anchors keep theirs): the focal loss of a weighted class's faces counts more."""
    import tensorflow as tf
    from official.vision.losses import loss_utils

    targets = loss_utils.multi_level_flatten(labels["cls_targets"], last_dim=None)
    w = tf.gather(tf.constant(class_weights, tf.float32), tf.maximum(tf.cast(targets, tf.int32), 0))
    return dict(labels, cls_weights=labels["cls_weights"] * w)


def _make_train_step(model, optimizer, task, strategy, replicas: int, mixed: bool, class_weights: list[float] | None = None):
    import tensorflow as tf

    def step_fn(images, labels):
        if class_weights is not None:
            labels = weight_classes(labels, class_weights)
        with tf.GradientTape() as tape:
            outputs = model(images, training=True)
            outputs = tf.nest.map_structure(lambda x: tf.cast(x, tf.float32), outputs)
            total, cls_loss, box_loss, _ = task.build_losses(outputs, labels, aux_losses=model.losses)
            scaled = total / replicas
            if mixed:
                scaled = optimizer.get_scaled_loss(scaled)
        grads = tape.gradient(scaled, model.trainable_variables)
        if mixed:
            grads = optimizer.get_unscaled_gradients(grads)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return {"total": total, "cls": cls_loss, "box": box_loss}

    @tf.function
    def train_step(images, labels):
        losses = strategy.run(step_fn, args=(images, labels))
        return {k: strategy.reduce("MEAN", v, axis=None) for k, v in losses.items()}

    return train_step
