"""Hooks of the training loop (as Keras and Ultralytics callbacks): the JSONL, console and TensorBoard loggers, and
the evaluate-and-keep-best step. Each gets ``on_step(step, losses, info)`` with ``info`` from the trainer (minutes,
lr, images/s, image size, ETA, ``evaluate``/``last`` flags and the model); ``on_eval(entry)`` after an evaluation."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Callable, Sequence

from mask_od.config import Config


def trim_jsonl(path: Path, step: int) -> list[dict]:
    """Keep the rows of a JSONL log (``train_log.jsonl``, ``eval_history.jsonl``) up to ``step``, rewriting the file
    atomically (a resumed run redoes the steps after its checkpoint); returns the rows kept."""
    from mask_od.fileio import write_text_atomic

    if not path.is_file():
        return []
    rows = [r for r in (json.loads(x) for x in path.read_text().splitlines() if x.strip()) if r["step"] <= step]
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in rows), overwrite=True)
    return rows


class Callback:
    def on_stage_start(self, stage_index: int, stage, plan) -> None: ...
    def on_step(self, step: int, losses: dict, info: dict) -> None: ...
    def on_eval(self, entry: dict) -> None: ...
    def on_end(self) -> None: ...


class JsonlLogger(Callback):
    """``train_log.jsonl``: one line per ``log_every`` steps (minutes count all sessions of the run)."""

    def __init__(self, run_dir: Path, log_every: int):
        self.path, self.every = run_dir / "train_log.jsonl", log_every

    def on_step(self, step, losses, info):
        if step % self.every == 0 or info["last"]:
            with open(self.path, "a") as f:
                f.write(json.dumps({"step": step, "minutes": round(info["minutes"], 3), "loss": losses["total"],
                                    "cls_loss": losses["cls"], "box_loss": losses["box"], "learning_rate": info["lr"],
                                    "images_per_second": round(info["ips"], 2), "image_size": info["image_size"]}) + "\n")


class ConsoleLogger(Callback):
    """Progress lines with ETA every ``log_every`` steps, the plan at each stage start, each evaluation."""

    def __init__(self, log_every: int):
        self.every = log_every

    def on_stage_start(self, stage_index, stage, plan):
        print(f"stage {stage_index + 1}/{len(plan.stages)} at {stage.image_size}px; plan: {plan.describe()}", flush=True)

    def on_step(self, step, losses, info):
        if step % self.every == 0 or info["last"]:
            eta = time.strftime("%H:%M:%S", time.gmtime(max(0.0, info["eta_seconds"])))
            print(f"step {step}/{info['total_steps']}  loss {losses['total']:.4f} (cls {losses['cls']:.4f} box {losses['box']:.5f})"
                  f"  lr {info['lr']:.5f}  {info['ips']:.1f} img/s  {info['image_size']}px  ETA {eta}", flush=True)

    def on_eval(self, entry):
        raw = f"  (raw weights: mAP@0.5 {entry['mAP50_raw']:.3f}; these are their moving average)" if "mAP50_raw" in entry else ""
        print(f"eval @ step {entry['step']} ({entry['minutes']:.1f} min): mAP {entry['mAP']:.3f}  mAP@0.5 {entry['mAP50']:.3f}{raw}", flush=True)


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


class TensorBoardLogger(Callback):
    """Scalars under ``train/`` and ``eval/``; the first augmented batch of each session with its boxes."""

    def __init__(self, run_dir: Path, log_every: int):
        import tensorflow as tf

        self.train = tf.summary.create_file_writer(str(run_dir / "train"))
        self.eval = tf.summary.create_file_writer(str(run_dir / "eval"))
        self.every, self.pictured = log_every, False

    def on_step(self, step, losses, info):
        import tensorflow as tf

        if not self.pictured and "batch" in info:
            self.pictured = True
            from official.vision.ops.preprocess_ops import MEAN_RGB, STDDEV_RGB

            images, labels = info["batch"]
            with self.train.as_default(step=step):
                rgb = tf.clip_by_value((images[:4] * STDDEV_RGB + MEAN_RGB) / 255.0, 0, 1)
                gtb = gt_boxes_from_labels(tf.nest.map_structure(lambda x: x[:4], labels), info["image_size"])
                tf.summary.image("train_batch_with_boxes", tf.image.draw_bounding_boxes(rgb, gtb, [[0.0, 1.0, 0.0]]), max_outputs=4)
        if step % self.every == 0 or info["last"]:
            with self.train.as_default(step=step):
                for k, v in losses.items():
                    tf.summary.scalar(f"loss/{k}", v)
                tf.summary.scalar("learning_rate", info["lr"])
                tf.summary.scalar("images_per_second", info["ips"])

    def on_eval(self, entry):
        import tensorflow as tf

        with self.eval.as_default(step=entry["step"]):
            for k in ("mAP", "mAP50", "mAP75", "AR100"):
                tf.summary.scalar(f"coco/{k}", entry["metrics"][k])
            for n, v in entry["per_class_AP50"].items():
                if v is not None:
                    tf.summary.scalar(f"AP50/{n}", v)
            if "mAP50_raw" in entry:
                tf.summary.scalar("coco/mAP50_raw_weights", entry["mAP50_raw"])

    def on_end(self):
        self.train.flush()
        self.eval.flush()


class EvaluateAndKeepBest(Callback):
    """COCO evaluation when the trainer says so (``info["evaluate"]``), always at the run's final input size (a twin
    model at that size gets the weights while a stage trains at another), then best-keeping: ``best/`` holds the
    weights with the highest mAP@0.5 and ``best/best.json`` its figures. Appends to ``eval_history.jsonl``, tells
    ``listeners`` (the other callbacks, the caller's hook) and records its duration in ``plan.eval_seconds``."""

    def __init__(self, config: Config, label_map: dict, num_classes: int, plan, listeners: Sequence[Callback] = (),
                 hook: Callable[[dict], None] | None = None):
        self.config, self.label_map, self.num_classes, self.plan = config, label_map, num_classes, plan
        self.run_dir = Path(config.output_dir)
        self.best_file = self.run_dir / "best" / "best.json"
        self.best = json.loads(self.best_file.read_text()) if self.best_file.exists() else {"mAP50": -1.0}
        self.history_file = self.run_dir / "eval_history.jsonl"
        self.history = [json.loads(x) for x in self.history_file.read_text().splitlines() if x.strip()] if self.history_file.exists() else []
        self.listeners, self.hook, self.seconds, self._twin, self._module = list(listeners), hook, 0.0, None, None

    def forget_after(self, step: int) -> None:
        """A resumed run redoes the steps after its checkpoint: their evaluations are dropped from the history."""
        self.history = trim_jsonl(self.history_file, step)

    def _final_size_model(self, model):
        if model.backbone.input_shape[1] == self.config.image_size:
            return model
        if self._twin is None:
            from mask_od.model import build_model

            self._twin = build_model(self.config, self.num_classes, load_pretrained=False)
        for src, dst in zip(model.variables, self._twin.variables):
            dst.assign(src)
        return self._twin

    def on_step(self, step, losses, info):
        if info["evaluate"]:
            t0 = time.perf_counter()
            averaged = info.get("averaged")
            raw = None
            if averaged is not None and averaged.active:  # the A/B of every evaluation: raw weights, then their average
                raw = self.score(info["model"], final=False)
            with averaged if averaged is not None else contextlib.nullcontext():
                entry = self.evaluate(info["model"], step, info["minutes"], final=info["final"], raw=raw)
            self.plan.eval_seconds = time.perf_counter() - t0
            self.seconds += self.plan.eval_seconds
            for cb in self.listeners:
                cb.on_eval(entry)
            if self.hook:
                self.hook({k: v for k, v in entry.items() if k != "metrics"})

    def score(self, model, final: bool) -> dict:
        """COCO metrics of ``model`` (at the run's final size) on the val records."""
        from mask_od.evaluate import evaluate_model

        from mask_od.inference import make_detection_module

        model = self._final_size_model(model)
        if self._module is None or self._module[0] is not model:  # traced once per model, not at every evaluation
            self._module = (model, make_detection_module(model, self.config))
        return evaluate_model(model, self.config, self.label_map, self.config.val_records,
                              out_dir=self.run_dir / "eval" if final else None, module=self._module[1])

    def evaluate(self, model, step: int, minutes: float, final: bool, raw: dict | None = None) -> dict:
        """Score ``model``, log it and keep it in ``best/`` if it is the best so far. ``raw``: the metrics of the raw
        weights when ``model`` holds their moving average (logged as ``mAP50_raw`` and ``per_class_AP50_raw``)."""
        import tensorflow as tf

        from mask_od.fileio import write_text_atomic

        m = self.score(model, final)
        entry = {"step": step, "minutes": round(minutes, 2), "mAP": m["mAP"], "mAP50": m["mAP50"],
                 "per_class_AP50": {k: v["AP50"] for k, v in m["per_class"].items()}}
        if raw is not None:
            entry |= {"mAP_raw": raw["mAP"], "mAP50_raw": raw["mAP50"],
                      "per_class_AP50_raw": {k: v["AP50"] for k, v in raw["per_class"].items()}}
        self.history.append(entry)
        with open(self.history_file, "a") as f:
            f.write(json.dumps(entry) + "\n")
        if m["mAP50"] > self.best["mAP50"]:
            self.best = {"mAP50": m["mAP50"], "mAP": m["mAP"], "step": step}
            tf.train.CheckpointManager(tf.train.Checkpoint(model=model, step=tf.Variable(step, dtype=tf.int64)),
                                       str(self.run_dir / "best"), max_to_keep=1).save(checkpoint_number=step)
            write_text_atomic(self.best_file, json.dumps(self.best), overwrite=True)
        return entry | {"metrics": m}
