"""Evaluation figures: PR curve per class, F1 against confidence, confusion matrix, predictions beside ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from mask_od.detections import SHOWN
from mask_od.plots import class_color_rgb, draw_boxes_rgb, new_figure, save_figure


def plot_all(samples: Sequence, metrics: Mapping, label_map: Mapping[int, str], out_dir: Path) -> dict[str, Path]:
    out_dir = Path(out_dir)
    names = {n: i for i, n in label_map.items()}
    color = lambda n: np.array(class_color_rgb(names[n])) / 255  # noqa: E731
    paths = {}
    fig, ax = new_figure(6.5, 5)
    ax = ax[0, 0]
    r = np.linspace(0, 1, 101)
    for n, p in metrics.get("pr_curves", {}).items():
        ax.plot(r, p, color=color(n), lw=2, label=f"{n} AP50 {metrics['per_class'][n]['AP50']:.3f}")
    ax.set(xlabel="Recall", ylabel="Precision", xlim=(0, 1), ylim=(0, 1.02), title=f"Precision-recall @IoU 0.5 (mAP50 {metrics['mAP50']:.3f})")
    if metrics.get("pr_curves"):
        ax.legend(loc="lower left")
    else:
        ax.text(0.5, 0.5, "no detections to rank", ha="center", va="center")
    ax.grid(alpha=0.3)
    paths["pr_curve"] = save_figure(fig, out_dir / "pr_curve.png")

    fig, ax = new_figure(6.5, 5)
    ax = ax[0, 0]
    thr = np.asarray(metrics["f1"]["thresholds"])
    for n, c in metrics["f1"]["classes"].items():
        if c["gt"]:
            f1 = np.asarray(c["f1"])
            ax.plot(thr, f1, color=color(n), lw=2, label=f"{n} best {f1.max():.2f} @ {thr[f1.argmax()]:.2f}")
    ax.set(xlabel="Confidence threshold", ylabel="F1", xlim=(0, 1), ylim=(0, 1.02), title="F1 against confidence")
    ax.legend(loc="lower left")
    ax.grid(alpha=0.3)
    paths["f1_curve"] = save_figure(fig, out_dir / "f1_curve.png")

    cm = np.asarray(metrics["confusion_matrix"]["counts"], float)
    labels = metrics["confusion_matrix"]["labels"]
    fig, ax = new_figure(6.5, 5.5)
    ax = ax[0, 0]
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, f"{int(v)}\n{norm[i, j]:.2f}", ha="center", va="center", fontsize=8,
                color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set(xlabel="Predicted", ylabel="True", title=f"Confusion matrix (score >= {metrics['confusion_matrix']['score_threshold']})")
    fig.colorbar(im, ax=ax, fraction=0.046)
    paths["confusion_matrix"] = save_figure(fig, out_dir / "confusion_matrix.png")

    if any(s.image is not None for s in samples):
        paths["predictions"] = save_figure(_prediction_grid(samples, label_map), out_dir / "predictions.png")
    return paths


def _prediction_grid(samples, label_map, n: int = 6, score_threshold: float = SHOWN):
    """Ground truth (left) beside predictions (right) for the first ``n`` samples that kept their image."""
    rows = [s for s in samples if s.image is not None][:n]
    fig, ax = new_figure(9, 3.6 * max(1, len(rows)), max(1, len(rows)), 2)
    for r, s in enumerate(rows):
        img = s.image
        keep = s.detections.scores >= score_threshold
        ax[r, 0].imshow(draw_boxes_rgb(img, s.gt_boxes, s.gt_classes, [label_map.get(int(c), "?") for c in s.gt_classes]))
        ax[r, 0].set_title(f"{s.name}: ground truth ({len(s.gt_classes)})", fontsize=9)
        ax[r, 1].imshow(draw_boxes_rgb(img, s.detections.boxes[keep], s.detections.classes[keep], [label_map.get(int(c), "?") for c in s.detections.classes[keep]], s.detections.scores[keep]))
        ax[r, 1].set_title(f"predictions >= {score_threshold} ({int(keep.sum())})", fontsize=9)
    for a in ax.flat:
        a.axis("off")
    return fig


def plot_training_curves(run_dir: Path | str) -> Path | None:
    """``training_curves.png`` of a run: losses and learning rate against steps, and mAP against minutes."""
    import json

    run_dir = Path(run_dir)
    log = run_dir / "train_log.jsonl"
    if not log.is_file():
        return None
    rows = [json.loads(x) for x in log.read_text().splitlines() if x.strip()]
    evals = [json.loads(x) for x in (run_dir / "eval_history.jsonl").read_text().splitlines()] if (run_dir / "eval_history.jsonl").is_file() else []
    fig, ax = new_figure(15, 4, 1, 3)
    steps = [r["step"] for r in rows]
    for key, col in (("loss", "#111111"), ("cls_loss", "#0074d9"), ("box_loss", "#ff851b")):
        ax[0, 0].plot(steps, [r[key] for r in rows], color=col, label=key)
    ax[0, 0].set(xlabel="step", title="Training loss", yscale="log")
    ax[0, 0].legend()
    ax[0, 1].plot(steps, [r["learning_rate"] for r in rows], color="#85144b")
    ax[0, 1].set(xlabel="step", title="Learning rate")
    if evals:
        ax[0, 2].plot([e["minutes"] for e in evals], [e["mAP50"] for e in evals], "o-", label="mAP@0.5", color="#2ecc40")
        ax[0, 2].plot([e["minutes"] for e in evals], [e["mAP"] for e in evals], "o-", label="mAP@[.5:.95]", color="#0074d9")
        names = [n for n in evals[-1].get("per_class_AP50", {}) if evals[-1]["per_class_AP50"][n] is not None]
        for i, n in enumerate(names):  # AP@0.5 of each class, dashed in the class colours of the other plots
            pts = [(e["minutes"], e["per_class_AP50"].get(n)) for e in evals if e.get("per_class_AP50", {}).get(n) is not None]
            ax[0, 2].plot(*zip(*pts), "--", lw=1.2, color=np.asarray(class_color_rgb(i + 1)) / 255, label=f"AP@0.5 {n}")
        ax[0, 2].legend(fontsize=8, loc="upper left")
    sizes = [(r["step"], r.get("image_size")) for r in rows]
    for (s0, a0), (s1, a1) in zip(sizes, sizes[1:]):
        if a0 and a1 and a0 != a1:  # a new stage of input size
            ax[0, 0].axvline(s1, color="#aaaaaa", ls=":")
            ax[0, 0].text(s1, ax[0, 0].get_ylim()[1], f" {a1}px", va="top", fontsize=8, color="#666666")
    ax[0, 2].set(xlabel="training minutes", title="Validation mAP", ylim=(0, 1))
    for a in ax.flat:
        a.grid(alpha=0.3)
    return save_figure(fig, run_dir / "training_curves.png")
