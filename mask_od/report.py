"""Dataset report: images, boxes per class, boxes per image, box sizes, and a grid of samples, as dict and PNGs."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Sequence

import numpy as np

from mask_od.annotations import Annotation, read_image_rgb
from mask_od.boxes import voc_xyxy_to_norm_yxyx
from mask_od.plots import class_color_rgb, draw_boxes_rgb, new_figure, save_figure


def dataset_report(annotations: Sequence[Annotation]) -> dict:
    """Counts and size statistics of a dataset (a plain dict, JSON-friendly)."""
    per_class = collections.Counter(n for a in annotations for n in a.names)
    per_image = [a.num_boxes for a in annotations]
    long_px = [float(max(b[2] - b[0], b[3] - b[1])) for a in annotations for b in a.boxes_xyxy]
    rel = [float(max(b[2] - b[0], b[3] - b[1]) / max(a.width, a.height)) for a in annotations for b in a.boxes_xyxy]
    q = lambda v, p: float(np.percentile(v, p)) if v else 0.0  # noqa: E731
    return {
        "images": len(annotations),
        "boxes": int(sum(per_image)),
        "boxes_per_class": dict(sorted(per_class.items(), key=lambda kv: -kv[1])),
        "images_without_boxes": int(sum(1 for n in per_image if n == 0)),
        "boxes_per_image": {"median": q(per_image, 50), "max": int(max(per_image, default=0))},
        "box_long_side_px": {"p10": q(long_px, 10), "median": q(long_px, 50), "p90": q(long_px, 90)},
        "box_long_side_rel": {"p10": q(rel, 10), "median": q(rel, 50), "p90": q(rel, 90)},
        "clipped_boxes": int(sum(a.clipped for a in annotations)),
        "image_sizes": dict(collections.Counter(f"{a.width}x{a.height}" for a in annotations).most_common(5)),
    }


def plot_dataset_report(
    annotations: Sequence[Annotation], out_dir: Path | str, class_ids: dict[str, int] | None = None, samples: int = 12, seed: int = 0
) -> dict[str, Path]:
    """Save ``stats.png`` (class counts, boxes per image, box sizes) and ``samples.png`` (images with boxes)."""
    out_dir = Path(out_dir)
    rep = dataset_report(annotations)
    names = list(rep["boxes_per_class"])
    class_ids = class_ids or {n: i + 1 for i, n in enumerate(sorted(names))}
    fig, ax = new_figure(15, 4.2, 1, 3)
    colors = [np.array(class_color_rgb(class_ids.get(n, 1))) / 255 for n in names]
    bars = ax[0, 0].bar(names, [rep["boxes_per_class"][n] for n in names], color=colors)
    ax[0, 0].bar_label(bars)
    ax[0, 0].set_title(f"Boxes per class ({rep['boxes']} boxes, {rep['images']} images)")
    ax[0, 0].tick_params(axis="x", labelrotation=15)
    per_image = [a.num_boxes for a in annotations]
    ax[0, 1].hist(per_image, bins=range(0, max(per_image, default=0) + 2), color="#0074d9")
    ax[0, 1].set_title("Boxes per image")
    ax[0, 1].set_xlabel("boxes")
    ax[0, 1].set_ylabel("images")
    for n, c in zip(names, colors):
        wh = np.array([[b[2] - b[0], b[3] - b[1]] for a in annotations for nm, b in zip(a.names, a.boxes_xyxy) if nm == n])
        if len(wh):
            ax[0, 2].scatter(wh[:, 0], wh[:, 1], s=6, alpha=0.5, color=c, label=n)
    ax[0, 2].set_xscale("log")
    ax[0, 2].set_yscale("log")
    ax[0, 2].set_title("Box size (pixels, log)")
    ax[0, 2].set_xlabel("width")
    ax[0, 2].set_ylabel("height")
    ax[0, 2].legend(markerscale=3)
    paths = {"stats": save_figure(fig, out_dir / "dataset_stats.png")}
    paths["samples"] = save_figure(plot_samples(annotations, class_ids, samples, seed), out_dir / "dataset_samples.png")
    return paths


def plot_samples(annotations: Sequence[Annotation], class_ids: dict[str, int], n: int = 12, seed: int = 0):
    """A grid figure of ``n`` images (seeded choice) with their labelled boxes."""
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(annotations), size=min(n, len(annotations)), replace=False) if annotations else []
    cols = 4
    rows = max(1, int(np.ceil(len(pick) / cols)))
    fig, ax = new_figure(4 * cols, 3.4 * rows, rows, cols)
    for k, a_ in enumerate(ax.flat):
        a_.axis("off")
        if k >= len(pick):
            continue
        ann = annotations[int(pick[k])]
        img = read_image_rgb(ann.image_path)
        boxes = voc_xyxy_to_norm_yxyx(ann.boxes_xyxy, ann.width, ann.height)
        a_.imshow(draw_boxes_rgb(img, boxes, [class_ids.get(nm, 1) for nm in ann.names], ann.names))
        a_.set_title(ann.image_path.name, fontsize=8)
    return fig
