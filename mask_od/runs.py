"""A run directory (what training leaves): its config, label map and weights; the model it holds, ready to predict."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import numpy as np

from mask_od.detections import ALL
from mask_od.errors import MaskODError
from mask_od.label_map import num_classes, read_label_map


class RunError(MaskODError, RuntimeError):
    """A run directory or checkpoint is missing, incomplete, or does not fit the model; the message says which."""


def is_run_dir(path: Path | str) -> bool:
    p = Path(path)
    return (p / "config.yaml").is_file() and ((p / "checkpoints").is_dir() or (p / "best").is_dir())


def restore_weights(model, path: str | Path) -> str:
    """Load the model weights of a run directory (its ``best/``, else ``checkpoints/``) or a checkpoint prefix into
    ``model``; returns the checkpoint read. Raises :class:`RunError` when there is none or it does not fit."""
    import tensorflow as tf

    p = Path(path)
    if p.is_dir():
        ckpt = tf.train.latest_checkpoint(str(p / "best")) or tf.train.latest_checkpoint(str(p / "checkpoints")) or tf.train.latest_checkpoint(str(p))
        if not ckpt:
            raise RunError(f"{p}: no checkpoint found to start from (expected checkpoints/ or best/ inside)")
        path = ckpt
    try:
        tf.train.Checkpoint(model=model).read(path).assert_existing_objects_matched().expect_partial()
    except (AssertionError, ValueError, tf.errors.NotFoundError) as e:
        raise RunError(f"{path}: checkpoint does not match this model (backbone, image_size or classes differ?): {e}") from None
    return path


def require_run_dir(run_dir: Path | str) -> Path:
    """``run_dir`` as a Path; :class:`RunError` when it holds no ``config.yaml`` (not what training leaves)."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise RunError(f"{run_dir}: not a run directory (no config.yaml); train first or pass the right folder")
    return run_dir


def weights_checkpoint(run_dir: Path, which: str = "best") -> str:
    """The checkpoint prefix a run's trained model is read from: the newest in ``best/`` (``which="best"``), else the
    latest in ``checkpoints/``. Raises :class:`RunError` when there is none."""
    import tensorflow as tf

    path = (tf.train.latest_checkpoint(str(run_dir / "best")) if which == "best" else None) or tf.train.latest_checkpoint(str(run_dir / "checkpoints"))
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
    restore_weights(model, weights_checkpoint(run_dir, which))
    return model, config, label_map


def predictor(model_path: Path | str, num_threads: int = 2) -> tuple[Callable[[np.ndarray], dict], dict, str, Path]:
    """What ``model_path`` is, ready to predict: a run directory (its best weights, through the serving function that
    export saves), an export folder, a SavedModel folder or a ``.tflite`` file. Returns (predict uint8 RGB -> dict of
    :class:`~mask_od.detections.Detections`, label map, the run's val_records or "", a default folder for evaluation output)."""
    from mask_od.config import build_config

    p = Path(model_path)
    if is_run_dir(p):
        from mask_od.inference import detections_from_outputs, make_detection_module

        net, config, label_map = load_trained_model(p)
        module = make_detection_module(net, config)
        return (lambda img: detections_from_outputs(module.serve(img[None]), label_map)), label_map, config.val_records, p / "eval"
    from mask_od.detect import Detector

    det = Detector(p, score_threshold=ALL, num_threads=num_threads)
    cfg = next((c for c in (det.path / "config.yaml", det.path.parent / "config.yaml") if c.is_file()), None)
    records = build_config(cfg).val_records if cfg else ""
    return det.predict, det.label_map, records, det.path.parent / f"eval_{det.path.stem}"
