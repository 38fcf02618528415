"""Detections of one image, the one type every stage passes on (serving outputs, the Detector, evaluation, live),
and the named score thresholds of the project."""

from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np

# Score thresholds, each for one purpose (the NMS pre-filter is the config key score_threshold, 0.05 by default).
ALL = 0.0  # evaluation and parity checks: every detection the model outputs
CONFUSION = 0.25  # confusion matrix: a detection counts from this score
SHOWN = 0.3  # prediction grids, and the SavedModel detections each TFLite file must find again
LIVE = 0.5  # live view, counts and alerts; pre-labels in annotation


@dataclasses.dataclass
class Detections:
    """Detections of one image, best first: ``boxes`` float32 ``[N, 4]`` normalized (ymin, xmin, ymax, xmax),
    ``classes`` int64 ``[N]`` label-map ids, ``scores`` float32 ``[N]``, ``names`` the class names (empty when no
    label map was given)."""

    boxes: np.ndarray
    classes: np.ndarray
    scores: np.ndarray
    names: list[str] = dataclasses.field(default_factory=list)

    @classmethod
    def from_arrays(cls, boxes, classes, scores, label_map: Mapping[int, str] | None = None) -> "Detections":
        """Checked arrays sorted by score (stable); names from ``label_map`` (``str(id)`` for an unknown id)."""
        b = np.asarray(boxes, np.float32).reshape(-1, 4)
        c = np.asarray(classes).astype(np.int64).reshape(-1)
        s = np.asarray(scores, np.float32).reshape(-1)
        if not len(b) == len(c) == len(s):
            raise ValueError(f"detections need as many boxes, classes and scores: got {len(b)}, {len(c)}, {len(s)}")
        order = np.argsort(-s, kind="stable")
        b, c, s = b[order], c[order], s[order]
        names = [label_map.get(int(i), str(int(i))) for i in c] if label_map is not None else []
        return cls(b, c, s, names)

    def __len__(self) -> int:
        return len(self.scores)

    def select(self, keep) -> "Detections":
        """The detections picked by a boolean mask or index array (order kept)."""
        keep = np.asarray(keep)
        names = [self.names[i] for i in np.arange(len(self))[keep]] if self.names else []
        return Detections(self.boxes[keep], self.classes[keep], self.scores[keep], names)

    def above(self, score: float, max_detections: int | None = None) -> "Detections":
        """Those with ``scores >= score``, at most ``max_detections`` (the best)."""
        idx = np.where(self.scores >= score)[0][:max_detections]
        return self.select(idx)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for n in self.names:
            out[n] = out.get(n, 0) + 1
        return out
