"""A run directory (what training leaves): its config, label map and weights; the model it holds, ready to predict."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from mask_od.detections import ALL
from mask_od.errors import MaskODError
from mask_od.label_map import num_classes, read_label_map


class RunError(MaskODError, RuntimeError):
    """A run directory or checkpoint is missing, incomplete, or does not fit the model; the message says which."""


class CheckpointDamagedError(RunError):
    """A checkpoint's files are there but cannot be read (its ``.data`` or ``.index`` file damaged or cut short)."""


# what TensorFlow raises for a checkpoint file it cannot read: an OpError (DataLossError, OutOfRangeError ...) for a bad
# .index, an IndexError ("Read less bytes than requested") for a .data file cut short
DAMAGED_CHECKPOINT_ERRORS: tuple[type[BaseException], ...] = (IndexError,)


def damaged_checkpoint_errors() -> tuple[type[BaseException], ...]:
    """The exceptions reading a damaged checkpoint raises (TensorFlow's OpError and :data:`DAMAGED_CHECKPOINT_ERRORS`)."""
    import tensorflow as tf

    return (tf.errors.OpError, *DAMAGED_CHECKPOINT_ERRORS)


def is_run_dir(path: Path | str) -> bool:
    p = Path(path)
    return (p / "config.yaml").is_file() and ((p / "checkpoints").is_dir() or (p / "best").is_dir())


def restore_weights(model, path: str | Path) -> str:
    """Load the model weights of a run directory (its ``best/``, else ``averaged/``, else ``checkpoints/``) or a checkpoint prefix into
    ``model`` (built: every variable exists); a float16 checkpoint (a packaged model's) is cast back to float32 on the
    way (:func:`cast_checkpoint`). Returns the checkpoint read. Raises :class:`RunError` when there is none or it does not fit."""
    import tensorflow as tf

    p = Path(path)
    if p.is_dir():
        ckpt = (tf.train.latest_checkpoint(str(p / "best")) or tf.train.latest_checkpoint(str(p / "averaged"))
                or tf.train.latest_checkpoint(str(p / "checkpoints")) or tf.train.latest_checkpoint(str(p)))
        if not ckpt:
            raise RunError(f"{p}: no checkpoint found to start from (expected checkpoints/ or best/ inside)")
        path = ckpt
    try:
        if tf.float16 not in tf.train.load_checkpoint(str(path)).get_variable_to_dtype_map().values():
            tf.train.Checkpoint(model=model).read(str(path)).assert_existing_objects_matched().expect_partial()
        else:  # a packaged checkpoint stored as float16 (mask_od.package): read through a float32 copy
            with tempfile.TemporaryDirectory(prefix="mask_od_float32_") as tmp:
                copy = cast_checkpoint(path, Path(tmp) / "model", "float32")
                tf.train.Checkpoint(model=model).read(copy).assert_existing_objects_matched().expect_partial()
    except (AssertionError, ValueError, tf.errors.NotFoundError) as e:
        raise RunError(f"{path}: checkpoint does not match this model (backbone, image_size or classes differ?): {e}") from None
    except damaged_checkpoint_errors() as e:
        raise CheckpointDamagedError(f"{path}: checkpoint cannot be read, its .index or .data file is damaged or cut short "
                                     f"({type(e).__name__}: {(str(e).splitlines() or [''])[0][:120]})") from None
    return str(path)


def source_config(path: str | Path):
    """The :class:`~mask_od.config.Config` a checkpoint was trained with: ``config.yaml`` of the run directory or
    packaged model folder ``path`` is, or holds its checkpoint prefix (``RUN/best/ckpt-N``, ``MODEL/checkpoint/model``),
    found by a ``config.yaml`` beside a ``label_map.pbtxt``. None when there is none (a bare checkpoint)."""
    from mask_od.config import build_config

    p = Path(path)
    for folder in ([p] if p.is_dir() else []) + [p.parent, p.parent.parent]:
        if (folder / "config.yaml").is_file() and (folder / "label_map.pbtxt").is_file():  # a run or a package
            return build_config(folder / "config.yaml")
    return None


def cast_checkpoint(src_prefix: str | Path, dst_prefix: str | Path, dtype: str = "float16") -> str:
    """Copy the checkpoint ``src_prefix`` to ``dst_prefix`` (``.index`` and one ``.data`` shard) with every floating
    tensor cast to ``dtype`` (``"float16"`` halves a packaged checkpoint; ``"float32"`` makes one the model restores);
    integer and string tensors (``step``, the object graph ``_CHECKPOINTABLE_OBJECT_GRAPH``) are kept as they are,
    under the same keys, so ``tf.train.Checkpoint(model=...).read`` matches a float32 copy like the original. Returns
    ``dst_prefix``. Raises :class:`RunError` naming the tensor when a finite value does not fit ``dtype`` (overflow)."""
    import tensorflow as tf

    src, dst = str(src_prefix), str(dst_prefix)
    reader = tf.train.load_checkpoint(src)
    names = sorted(reader.get_variable_to_dtype_map())
    tensors = []
    for name in names:
        value = reader.get_tensor(name)
        if isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.floating):
            cast = value.astype(dtype)
            if not np.isfinite(cast).all() and np.isfinite(value).all():
                raise RunError(f"{src}: {name} holds values up to {np.abs(value).max():.3g}, beyond {dtype}: keep this checkpoint in float32")
            value = cast
        tensors.append(tf.constant(value))
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    tf.raw_ops.SaveV2(prefix=dst, tensor_names=names, shape_and_slices=[""] * len(names), tensors=tensors)
    return dst


def require_run_dir(run_dir: Path | str) -> Path:
    """``run_dir`` as a Path; :class:`RunError` when it holds no ``config.yaml`` (not what training leaves)."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise RunError(f"{run_dir}: no such folder; pass a run folder (training's output_dir, e.g. workspace/models/RUN)")
    if not (run_dir / "config.yaml").is_file():
        raise RunError(f"{run_dir}: not a run directory (no config.yaml); train first or pass the right folder")
    return run_dir


def weights_checkpoint(run_dir: Path, which: str = "best") -> str:
    """The checkpoint prefix a run's trained model is read from: the newest in ``best/`` (``which="best"``), else the
    moving-average weights of a run trained with ``ema_decay`` and no val records (``averaged/``), else the latest in
    ``checkpoints/``. Raises :class:`RunError` when there is none."""
    import tensorflow as tf

    path = ((tf.train.latest_checkpoint(str(run_dir / "best")) or tf.train.latest_checkpoint(str(run_dir / "averaged")) if which == "best" else None)
            or tf.train.latest_checkpoint(str(run_dir / "checkpoints")))
    if not path:
        raise RunError(f"{run_dir}: no checkpoint found in best/ or checkpoints/")
    return path


def load_trained_model(run_dir: Path | str, which: str = "best", image_size: int | None = None):
    """(model, config, label_map) of a run directory, weights from ``best`` (falls back to the latest checkpoint).
    ``image_size`` runs the same weights at another input size (the network is fully convolutional)."""
    from mask_od.config import build_config
    from mask_od.model import build_model

    run_dir = require_run_dir(run_dir)
    config = build_config(run_dir / "config.yaml")
    if image_size:
        config = dataclasses.replace(config, image_size=image_size)
    label_map = read_label_map(run_dir / "label_map.pbtxt")
    model = build_model(config, num_classes(label_map), load_pretrained=False)
    path = weights_checkpoint(run_dir, which)
    try:
        restore_weights(model, path)
    except CheckpointDamagedError as e:
        raise CheckpointDamagedError(f"{e}: {_damaged_advice(run_dir, path)}") from None
    return model, config, label_map


def _damaged_advice(run_dir: Path, damaged: str) -> str:
    """What to do when the checkpoint ``damaged`` of ``run_dir`` cannot be read: use the latest one when it is another."""
    import tensorflow as tf

    latest = tf.train.latest_checkpoint(str(run_dir / "checkpoints"))
    if latest and Path(latest) != Path(damaged):
        return (f"pass --which latest to use the run's latest checkpoint {latest} instead, or restore the files of "
                f"{damaged} from a backup")
    return f"restore the files of {damaged} from a backup, or train the run again"


def predictor(model_path: Path | str, num_threads: int = 2,
              which: str = "best") -> tuple[Callable[[np.ndarray], dict], dict, str, Path]:
    """What ``model_path`` is, ready to predict: a run directory (its ``which`` weights, ``best`` or ``latest``, through
    the serving function that export saves), an export folder, a SavedModel folder or a ``.tflite`` file. Returns
    (predict uint8 RGB -> dict of :class:`~mask_od.detections.Detections`, label map, the run's val_records or "", a
    default folder for evaluation output)."""
    from mask_od.config import build_config

    p = Path(model_path)
    if is_run_dir(p):
        from mask_od.inference import detections_from_outputs, make_detection_module

        net, config, label_map = load_trained_model(p, which)
        module = make_detection_module(net, config)
        return (lambda img: detections_from_outputs(module.serve(img[None]), label_map)), label_map, config.val_records, p / "eval"
    if which != "best":
        raise RunError(f"{p}: --which {which} chooses a checkpoint of a run folder; this is not one (no config.yaml with "
                       "checkpoints/ or best/)")
    from mask_od.detect import Detector

    det = Detector(p, score_threshold=ALL, num_threads=num_threads)
    cfg = next((c for c in (det.path / "config.yaml", det.path.parent / "config.yaml") if c.is_file()), None)
    records = build_config(cfg).val_records if cfg else ""
    return det.predict, det.label_map, records, det.path.parent / f"eval_{det.path.stem}"


DATA_FILE = "data.json"  # what a run was trained on: records identity and provenance (written by train)
# settings a resumed run must share with the run it continues (besides the label map and train.MODEL_KEYS); the
# schedule's length (steps, time_budget_min, warmup_steps), logging, evaluation and output keys may change
RESUME_KEYS = ("batch_size", "learning_rate", "pretrained", "init_checkpoint", "weight_decay", "ema_decay", "freeze_backbone_bn",
               "aug_hflip", "aug_scale_min", "aug_scale_max", "aug_ssd_random_crop", "aug_color", "repeat_threshold", "class_weights", "max_boxes",
               "seed")


def records_identity(records: str) -> dict:
    """What identifies TFRecords: per file its name, size and sha256; the number of examples, and how many of them
    are generated demo images (``synthetic_*`` files of :mod:`mask_od.synthetic`)."""
    import tensorflow as tf

    from mask_od.input_pipeline import resolve_records
    from mask_od.shipped import sha256_file

    files = resolve_records(records)
    names = [tf.io.parse_single_example(r, {"image/filename": tf.io.FixedLenFeature([], tf.string, b"")})["image/filename"]
             .numpy().decode(errors="replace") for r in tf.data.TFRecordDataset(files)]
    return {"files": [{"name": Path(f).name, "bytes": Path(f).stat().st_size, "sha256": sha256_file(f)} for f in files],
            "examples": len(names), "synthetic": sum(n.startswith("synthetic_") for n in names)}


def read_data_identity(run_dir: Path | str) -> dict | None:
    """The ``data.json`` of a run (None for a run trained before it was written, or without one)."""
    import json

    p = Path(run_dir) / DATA_FILE
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def resume_differences(config, run_dir: Path | str, train_identity: dict, unknown_differs: bool = False) -> list[str]:
    """Why ``config`` cannot continue the run in ``run_dir``: its training records (content, not the path) or a key of
    ``train.MODEL_KEYS`` and :data:`RESUME_KEYS` differ. [] when they agree or there is no run there; a run without
    ``data.json`` (trained before it was written) counts as other data only with ``unknown_differs``."""
    from mask_od.config import build_config
    from mask_od.train import MODEL_KEYS

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file() or not (run_dir / "checkpoints" / "checkpoint").is_file():
        return []
    out = []
    old = read_data_identity(run_dir)
    if old is None and unknown_differs:
        out.append(f"train records: unknown (no {DATA_FILE} in {run_dir})")
    elif old is not None and old.get("train_records", {}).get("files") != train_identity["files"]:
        o = old["train_records"]
        out.append(f"train records: {o.get('examples')} examples ({o.get('synthetic')} generated demo images), sha256 "
                   f"{o['files'][0]['sha256'][:12] if o.get('files') else '?'} -> {train_identity['examples']} examples "
                   f"({train_identity['synthetic']} demo), sha256 {train_identity['files'][0]['sha256'][:12]}")
    old_cfg = build_config(run_dir / "config.yaml")
    out += [f"{k}: {getattr(old_cfg, k)!r} -> {getattr(config, k)!r}" for k in MODEL_KEYS + RESUME_KEYS if getattr(old_cfg, k) != getattr(config, k)]
    return out


def trained_on_real_photos(run_dir: Path | str) -> bool:
    """True when the run's ``data.json`` says its training records hold no generated demo image (False when unknown)."""
    ident = read_data_identity(run_dir)
    rec = (ident or {}).get("train_records") or {}
    return bool(rec.get("examples")) and rec.get("synthetic") == 0


def free_run_dir(run_dir: Path | str, config) -> tuple[Path, str]:
    """Where a run of ``config`` goes: ``run_dir`` when it is new or ``config`` can resume it (a run of unknown data
    is not resumed), else the first of ``run_dir-2``, ``-3`` … that is; with the line to print saying which and why."""
    from mask_od.label_map import read_label_map

    base = Path(run_dir)
    ident = records_identity(config.train_records)
    lm = read_label_map(config.label_map)
    first_diff = ""  # what differs in run_dir itself, said when a later name is taken
    for k in range(1, 1000):
        cand = base if k == 1 else base.with_name(f"{base.name}-{k}")
        diff = resume_differences(config, cand, ident, unknown_differs=True)
        if (cand / "label_map.pbtxt").is_file() and (cand / "checkpoints" / "checkpoint").is_file() and read_label_map(cand / "label_map.pbtxt") != lm:
            diff.append("label map")
        if not diff:
            line = f"run folder {cand} ({'resumes it' if (cand / 'checkpoints' / 'checkpoint').is_file() else 'new'})"
            return cand, line if k == 1 else f"{line}: {base} holds a run on other data or settings ({first_diff})"
        if k == 1:
            first_diff = "; ".join(diff)
    raise RunError(f"{base}: no free run folder name")
