"""Detection-level transfer: start a new detector from a packaged one (``pretrained: face_mask`` or a packaged folder).

Backbone, FPN, box head and the class head's tower are taken from the packaged checkpoint. The class layer (the last
conv of the class head, ``num_anchors * (classes + 1)`` outputs, anchor-major) is mapped by class name: the outputs of
every class the packaged model knows (whatever its id, order or the subset used) are copied, with the background's
(none when no name is shared); only new names keep their fresh initialisation (the focal-loss prior). One printed line says which classes were kept
and which are new. A checkpoint made for another backbone or anchor size is refused."""

from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np

from mask_od.config import Config
from mask_od.label_map import num_classes, read_label_map
from mask_od.lite_internals import class_layer
from mask_od.shipped import (
    CHECKPOINT,
    SHIPPED,
    ShippedModelError,
    checkpoint_files,
    manifest_anchors,
    model_dir,
    verify,
)


def check_packaged(config: Config) -> dict:
    """The manifest of ``config.pretrained`` once its checkpoint and label map pass the sha256 check and it fits the
    config's backbone and anchors. Raises :class:`ShippedModelError` saying what differs."""
    folder = model_dir(config.pretrained)
    checkpoint = checkpoint_files(folder)
    manifest = verify(folder, only=checkpoint + ["label_map.pbtxt"])
    if not checkpoint:
        raise ShippedModelError(f"{folder}: the manifest lists no {CHECKPOINT}.* checkpoint files")
    made = {"backbone": manifest["backbone"], **manifest_anchors(manifest)}
    wrong = [f"{k} {v!r} (this config: {getattr(config, k)!r})" for k, v in made.items() if v != getattr(config, k)]
    if wrong:
        raise ShippedModelError(f"{folder}: made for {', '.join(wrong)}: its weights do not fit this model; set "
                                f"{' and '.join(w.split()[0] for w in wrong)} to the model's, or pretrained: imagenet")
    return manifest


def map_class_outputs(source: np.ndarray, target: np.ndarray, rows: Mapping[int, int], num_anchors: int) -> np.ndarray:
    """``target`` with the class outputs of ``source`` copied by id: ``rows`` maps a target class id (0 = background)
    to the source's. The last axis of both is ``num_anchors * classes`` (anchor-major, as the head's output is reshaped
    to ``[..., num_anchors, classes]``); e.g. a pointwise kernel ``[1, 1, in, A * C]`` or a bias ``[A * C]``."""
    cs, ct = source.shape[-1] // num_anchors, target.shape[-1] // num_anchors
    src = source.reshape(*source.shape[:-1], num_anchors, cs)
    out = target.reshape(*target.shape[:-1], num_anchors, ct).copy()
    for t, s in rows.items():
        out[..., t] = src[..., s]
    return out.reshape(target.shape)


def init_from_packaged(model, config: Config, label_map: Mapping[int, str]) -> str:
    """Load the packaged detector ``config.pretrained`` into ``model`` (built from ``config`` for ``label_map``) and
    return the line to print. Same label map: every variable equals the file's. Otherwise every variable but the
    class layer, whose outputs are copied for the background and each class name the packaged model knows."""
    from mask_od.model import build_model
    from mask_od.runs import RunError, restore_weights

    check_packaged(config)
    folder = model_dir(config.pretrained)
    source_lm = read_label_map(folder / "label_map.pbtxt")
    source = build_model(dataclasses.replace(config, pretrained="none"), num_classes(source_lm), load_pretrained=False)
    try:
        restore_weights(source, folder / CHECKPOINT)
    except RunError as e:
        raise ShippedModelError(str(e)) from None
    same = dict(source_lm) == dict(label_map)
    source_ids = {n: i for i, n in source_lm.items()}
    rows = {i: source_ids[n] for i, n in label_map.items() if n in source_ids}
    rows = {0: 0, **rows} if rows else {}  # no name in common: the whole class layer stays fresh
    anchors = model.head.get_config()["num_anchors_per_location"]
    outputs = anchors * (max(label_map) + 1)  # the last axis of the class layer's pointwise kernel and bias
    classes = {v.ref() for v in class_layer(model) if v.shape[-1] == outputs}
    fresh = set() if same or rows else {v.ref() for v in class_layer(model)}
    src, dst = source.weights, model.weights
    if len(src) != len(dst):
        raise ShippedModelError(f"{folder}: {len(src)} variables, this model has {len(dst)}: not the same architecture")
    copied = 0
    for s, d in zip(src, dst):
        if d.ref() in fresh:
            continue
        if d.ref() in classes and not same and s.shape[:-1] == d.shape[:-1]:  # pointwise kernel and bias: by name
            d.assign(map_class_outputs(s.numpy(), d.numpy(), rows, anchors))
            continue
        if s.shape != d.shape:
            raise ShippedModelError(f"{folder}: variable {d.name} has shape {s.shape} in the file and {d.shape} here")
        d.assign(s)
        copied += 1
    name = config.pretrained if config.pretrained in SHIPPED else str(folder)
    if same:
        return f"initialised the whole detector from {name} ({copied} variables; classes {', '.join(label_map.values())})"
    kept = [n for n in label_map.values() if n in source_ids]
    new = [n for n in label_map.values() if n not in source_ids]
    if not kept:
        return (f"initialised backbone, FPN and box head from {name}; class layer re-initialised for "
                f"{', '.join(new)} (the model's classes are {', '.join(source_lm.values())})")
    return (f"initialised the detector from {name}; class layer mapped by name: kept {', '.join(kept)}"
            + (f"; new (fresh rows) {', '.join(new)}" if new else "; no new classes")
            + f" (the model's classes are {', '.join(source_lm.values())})")
