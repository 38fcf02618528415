"""Detection-level transfer: start a new detector from a packaged one (``pretrained: face_mask`` or a packaged folder).

Backbone, FPN, box head and the class head's tower are taken from the packaged checkpoint. The class layer (the last
conv of the class head, ``num_anchors * (classes + 1)`` outputs) is taken too when the label maps are equal; with other
class names or another number of classes it keeps its fresh initialisation (the focal-loss prior), and one printed line
says so. A checkpoint made for another backbone or anchor size is refused."""

from __future__ import annotations

import dataclasses
from typing import Mapping

from mask_od.config import Config
from mask_od.label_map import num_classes, read_label_map
from mask_od.shipped import (
    CHECKPOINT,
    SHIPPED,
    ShippedModelError,
    checkpoint_files,
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
    wrong = [f"{k} {manifest[k]!r} (this config: {getattr(config, k)!r})"
             for k in ("backbone", "anchor_size") if manifest[k] != getattr(config, k)]
    if wrong:
        raise ShippedModelError(f"{folder}: made for {', '.join(wrong)}: its weights do not fit this model; set "
                                f"{' and '.join(w.split()[0] for w in wrong)} to the model's, or pretrained: imagenet")
    return manifest


def class_layer(model) -> list:
    """The variables of the class layer: the class head's last conv (shared by all levels)."""
    return list(model.head._classifier.weights)


def init_from_packaged(model, config: Config, label_map: Mapping[int, str]) -> str:
    """Load the packaged detector ``config.pretrained`` into ``model`` (built from ``config`` for ``label_map``) and
    return the line to print. Same label map: every variable equals the file's. Otherwise all but the class layer."""
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
    skip = set() if same else {v.ref() for v in class_layer(model)}
    src, dst = source.weights, model.weights
    if len(src) != len(dst):
        raise ShippedModelError(f"{folder}: {len(src)} variables, this model has {len(dst)}: not the same architecture")
    copied = 0
    for s, d in zip(src, dst):
        if d.ref() in skip:
            continue
        if s.shape != d.shape:
            raise ShippedModelError(f"{folder}: variable {d.name} has shape {s.shape} in the file and {d.shape} here")
        d.assign(s)
        copied += 1
    name = config.pretrained if config.pretrained in SHIPPED else str(folder)
    if same:
        return f"initialised the whole detector from {name} ({copied} variables; classes {', '.join(label_map.values())})"
    return (f"initialised backbone, FPN and box head from {name}; class layer re-initialised for "
            f"{', '.join(label_map.values())} (the model's classes are {', '.join(source_lm.values())})")
