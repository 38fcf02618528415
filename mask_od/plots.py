"""Small matplotlib helpers shared by the report and evaluation plots (no pyplot state, safe headless)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

CLASS_COLORS_RGB = [(46, 204, 64), (255, 65, 54), (255, 180, 0), (0, 116, 217), (177, 13, 201), (57, 204, 204)]


def class_color_rgb(class_id: int) -> tuple[int, int, int]:
    """Colour of a label-map id (1: green, 2: red, 3: amber, ...), the same in plots and the live view."""
    return CLASS_COLORS_RGB[(int(class_id) - 1) % len(CLASS_COLORS_RGB)]


def new_figure(width: float = 8, height: float = 5, nrows: int = 1, ncols: int = 1):
    """A matplotlib Figure and its axes, detached from pyplot (no GUI backend needed)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def save_figure(fig, path: Path | str) -> Path:
    """Save a figure as PNG through a temporary name."""
    from mask_od.fileio import atomic_path

    path = Path(path)
    with atomic_path(path, overwrite=True) as tmp:
        fig.savefig(tmp, format="png")
    return path


def draw_boxes_rgb(
    image: np.ndarray, boxes_yxyx: np.ndarray, class_ids, labels, scores=None, thickness: int | None = None
) -> np.ndarray:
    """Copy of an RGB image with normalized yxyx boxes drawn in class colours, label (and score) above each."""
    import cv2

    out = np.ascontiguousarray(image.copy())
    h, w = out.shape[:2]
    t = thickness or max(1, round(min(h, w) / 250))
    scale = max(0.35, min(h, w) / 900)
    for k, (box, cid) in enumerate(zip(np.asarray(boxes_yxyx).reshape(-1, 4), class_ids)):
        y0, x0, y1, x1 = (int(round(v)) for v in (box[0] * h, box[1] * w, box[2] * h, box[3] * w))
        color = class_color_rgb(cid)
        cv2.rectangle(out, (x0, y0), (x1, y1), color, t, cv2.LINE_AA)
        text = str(labels[k]) + (f" {scores[k]:.2f}" if scores is not None else "")
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, max(1, t // 2))
        ty = max(y0, th + base + 2)
        cv2.rectangle(out, (x0, ty - th - base - 2), (x0 + tw + 2, ty), color, -1)
        cv2.putText(out, text, (x0 + 1, ty - base), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), max(1, t // 2), cv2.LINE_AA)
    return out
