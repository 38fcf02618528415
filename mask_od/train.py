"""Training in one process: augmentation, checkpoints N deep with resume, TensorBoard, periodic COCO eval, best kept."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from pathlib import Path
from typing import Callable

from mask_od.config import Config
from mask_od.label_map import read_label_map


class TrainingError(RuntimeError):
    """Training stopped for a reason the message explains (NaN loss, out of memory, mismatched checkpoint)."""


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


def _optimizer(config: Config):
    import tf_keras
    from official.modeling.optimization.lr_schedule import LinearWarmup

    lr = tf_keras.optimizers.schedules.CosineDecay(config.learning_rate, config.steps, alpha=0.01)
    if config.warmup_steps:
        lr = LinearWarmup(lr, config.warmup_steps, config.learning_rate / 10)
    return tf_keras.optimizers.SGD(learning_rate=lr, momentum=0.9), lr


def gt_boxes_from_labels(labels, image_size: int):
    """Recover the (augmented) ground-truth boxes of a batch from its anchor targets: positive anchors decoded with
    Model Garden's box coder. Returns normalized yxyx ``[B, N, 4]`` (duplicates allowed), for pictures only."""
    import tensorflow as tf
    from official.vision.ops import box_ops

    boxes = []
    for level, anchors in labels["anchor_boxes"].items():
        b = tf.shape(labels["box_targets"][level])[0]
        a = tf.reshape(anchors, [b, -1, 4])
        t = tf.reshape(labels["box_targets"][level], [b, -1, 4])
        c = tf.reshape(labels["cls_targets"][level], [b, -1])
        dec = box_ops.decode_boxes(t, a)
        boxes.append(tf.where((c > 0)[..., None], dec, tf.zeros_like(dec)))
    return tf.concat(boxes, 1) / float(image_size)


def _restore_init(model, path: str) -> str:
    import tensorflow as tf

    p = Path(path)
    if p.is_dir():
        ckpt = tf.train.latest_checkpoint(str(p / "best")) or tf.train.latest_checkpoint(str(p / "checkpoints")) or tf.train.latest_checkpoint(str(p))
        if not ckpt:
            raise TrainingError(f"{p}: no checkpoint found to start from (expected checkpoints/ or best/ inside)")
        path = ckpt
    try:
        tf.train.Checkpoint(model=model).read(path).assert_existing_objects_matched().expect_partial()
    except (AssertionError, ValueError, tf.errors.NotFoundError) as e:
        raise TrainingError(f"{path}: checkpoint does not match this model (backbone, image_size or classes differ?): {e}") from None
    return path


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


def _train(config: Config, progress: bool, on_eval: Callable[[dict], None] | None, mixed: bool) -> TrainResult:
    import tensorflow as tf
    import tf_keras

    from mask_od.data import build_train_dataset
    from mask_od.model import build_model

    tf_keras.utils.set_random_seed(config.seed)
    run_dir = Path(config.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    label_map = read_label_map(config.label_map)
    config.save(run_dir / "config.yaml")
    shutil.copyfile(config.label_map, run_dir / "label_map.pbtxt")
    strategy = build_strategy(config.strategy)
    replicas = strategy.num_replicas_in_sync
    global_batch = config.batch_size * replicas
    if config.strategy != "default" or mixed:
        print(f"{type(strategy).__name__}: {replicas} replica(s), global batch {global_batch}"
              + ("; mixed_float16 with loss scaling" if mixed else ""), flush=True)
    with strategy.scope():
        model = build_model(config, len(label_map))
        optimizer, lr = _optimizer(config)
        if mixed:
            optimizer = tf_keras.mixed_precision.LossScaleOptimizer(optimizer)
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step)
    task = _loss_task(len(label_map))
    manager = tf.train.CheckpointManager(ckpt, str(run_dir / "checkpoints"), max_to_keep=config.keep_checkpoints)
    best_manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model, step=step), str(run_dir / "best"), max_to_keep=1)
    if manager.latest_checkpoint:
        ckpt.restore(manager.latest_checkpoint).expect_partial()
        print(f"resumed from {manager.latest_checkpoint} at step {int(step.numpy())}")
    elif config.init_checkpoint:
        print(f"initialised from {_restore_init(model, config.init_checkpoint)}")
    best_file = run_dir / "best" / "best.json"
    best = json.loads(best_file.read_text()) if best_file.exists() else {"mAP50": -1.0}
    history_file = run_dir / "eval_history.jsonl"
    history = [json.loads(x) for x in history_file.read_text().splitlines()] if history_file.exists() else []

    train_data = build_train_dataset(config, batch_size=global_batch)
    dataset = strategy.experimental_distribute_dataset(train_data)

    def step_fn(images, labels):
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

    if int(step.numpy()) == 0 and not config.init_checkpoint:
        from mask_od.model import warm_start_batch_norm

        images, _ = next(iter(train_data))
        warm_start_batch_norm(model, images[: config.batch_size])

    tb_train = tf.summary.create_file_writer(str(run_dir / "train"))
    tb_eval = tf.summary.create_file_writer(str(run_dir / "eval"))
    it = iter(dataset)
    start_step = int(step.numpy())
    t_start = time.perf_counter()
    t_window, n_window, ips = time.perf_counter(), 0, 0.0
    first_images = True
    while int(step.numpy()) < config.steps:
        images, labels = next(it)
        try:
            losses = train_step(images, labels)
        except tf.errors.ResourceExhaustedError:
            raise TrainingError(f"out of memory at step {int(step.numpy())} with batch_size={config.batch_size}, "
                                f"image_size={config.image_size}: lower batch_size (or image_size), or set mixed_precision=true on a GPU") from None
        step.assign_add(1)
        s = int(step.numpy())
        n_window += global_batch
        total = float(losses["total"])
        if not math.isfinite(total):
            raise TrainingError(f"loss is {total} at step {s}: lower learning_rate (now {config.learning_rate}) or raise "
                                "warmup_steps; check the TFRecords for empty or inverted boxes")
        if first_images:
            first_images = False
            with tb_train.as_default(step=s):
                local = strategy.experimental_local_results(images)[0]
                local_labels = tf.nest.map_structure(lambda x: strategy.experimental_local_results(x)[0], labels)
                from official.vision.ops.preprocess_ops import MEAN_RGB, STDDEV_RGB

                rgb = tf.clip_by_value((local[:4] * STDDEV_RGB + MEAN_RGB) / 255.0, 0, 1)
                gtb = gt_boxes_from_labels(tf.nest.map_structure(lambda x: x[:4], local_labels), config.image_size)
                tf.summary.image("train_batch_with_boxes", tf.image.draw_bounding_boxes(rgb, gtb, [[0.0, 1.0, 0.0]]), max_outputs=4)
        if s % config.log_every == 0 or s == config.steps:
            dt = time.perf_counter() - t_window
            ips = n_window / dt if dt > 0 else 0.0
            t_window, n_window = time.perf_counter(), 0
            cur_lr = float(lr(step)) if callable(lr) else float(lr)
            with tb_train.as_default(step=s):
                for k, v in losses.items():
                    tf.summary.scalar(f"loss/{k}", v)
                tf.summary.scalar("learning_rate", cur_lr)
                tf.summary.scalar("images_per_second", ips)
            with open(run_dir / "train_log.jsonl", "a") as f:
                f.write(json.dumps({"step": s, "minutes": round((time.perf_counter() - t_start) / 60, 3), "loss": total,
                                    "cls_loss": float(losses["cls"]), "box_loss": float(losses["box"]),
                                    "learning_rate": cur_lr, "images_per_second": round(ips, 2)}) + "\n")
            if progress:
                done = s - start_step
                eta = (time.perf_counter() - t_start) / max(done, 1) * (config.steps - s)
                print(f"step {s}/{config.steps}  loss {total:.4f} (cls {float(losses['cls']):.4f} box {float(losses['box']):.5f})"
                      f"  lr {cur_lr:.5f}  {ips:.1f} img/s  ETA {time.strftime('%H:%M:%S', time.gmtime(eta))}", flush=True)
        if s % config.checkpoint_every == 0 or s == config.steps:
            manager.save(checkpoint_number=s)
        if config.val_records and ((config.eval_every and s % config.eval_every == 0) or s == config.steps):
            m = evaluate_model(model, config, label_map, config.val_records, out_dir=run_dir / "eval" if s == config.steps else None)
            entry = {"step": s, "minutes": round((time.perf_counter() - t_start) / 60, 2), "mAP": m["mAP"], "mAP50": m["mAP50"],
                     "per_class_AP50": {k: v["AP50"] for k, v in m["per_class"].items()}}
            history.append(entry)
            with open(history_file, "a") as f:
                f.write(json.dumps(entry) + "\n")
            with tb_eval.as_default(step=s):
                for k in ("mAP", "mAP50", "mAP75", "AR100"):
                    tf.summary.scalar(f"coco/{k}", m[k])
                for n, v in m["per_class"].items():
                    if v["AP50"] is not None:
                        tf.summary.scalar(f"AP50/{n}", v["AP50"])
            print(f"eval @ step {s}: mAP {m['mAP']:.3f}  mAP@0.5 {m['mAP50']:.3f}", flush=True)
            if m["mAP50"] > best["mAP50"]:
                best = {"mAP50": m["mAP50"], "mAP": m["mAP"], "step": s}
                best_manager.save(checkpoint_number=s)
                best_file.write_text(json.dumps(best))
            if on_eval:
                on_eval(entry)
    tb_train.flush()
    tb_eval.flush()
    return TrainResult(run_dir, int(step.numpy()), manager.latest_checkpoint, best_manager.latest_checkpoint,
                       best["mAP50"] if best["mAP50"] >= 0 else None, history, ips)


def evaluate_model(model, config: Config, label_map, records, out_dir=None, limit: int | None = None, progress: bool = False) -> dict:
    """COCO metrics of an in-memory model on TFRecords, through the same serving function that export saves."""
    from mask_od.evaluate import evaluate, examples_from_records
    from mask_od.inference import detections_to_numpy, make_detection_module

    module = make_detection_module(model, config)
    predict = lambda img: detections_to_numpy(module.serve(img[None]))  # noqa: E731
    return evaluate(predict, examples_from_records(records, limit), label_map, out_dir=out_dir, progress=progress)


def load_trained_model(run_dir: Path | str, which: str = "best", image_size: int | None = None):
    """(model, config, label_map) of a run directory, weights from ``best`` (falls back to the latest checkpoint).
    ``image_size`` runs the same weights at another input size (the network is fully convolutional)."""
    import tensorflow as tf

    from mask_od.config import build_config
    from mask_od.model import build_model

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise TrainingError(f"{run_dir}: not a run directory (no config.yaml); train first or pass the right folder")
    config = build_config(run_dir / "config.yaml")
    if image_size:
        config = config.replace(image_size=image_size)
    label_map = read_label_map(run_dir / "label_map.pbtxt")
    model = build_model(config, len(label_map), load_pretrained=False)
    path = (tf.train.latest_checkpoint(str(run_dir / "best")) if which == "best" else None) or tf.train.latest_checkpoint(str(run_dir / "checkpoints"))
    if not path:
        raise TrainingError(f"{run_dir}: no checkpoint found in best/ or checkpoints/")
    _restore_init(model, path)
    return model, config, label_map
