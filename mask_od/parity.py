"""Does a deployed file decide like the model it was exported from? Detection-level agreement (boxes, classes,
scores) of two models' detections on the same images, and a paired bootstrap interval of their mAP@0.5 difference."""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np

from mask_od.boxes import box_iou_yxyx
from mask_od.detections import SHOWN, Detections

# A file is refused when, on the check images (each bound is explained where it is used in parity_failures):
MIN_AGREEMENT = 0.90  # the 95% upper bound of the share of detections found by both is below this
MAX_SCORE_SHIFT = 0.05  # the median score difference of matched detections is larger than this (its whole 95% interval)
MAX_SCORE_SPREAD = 0.15  # the 90th percentile of absolute score differences is larger than this (its 95% lower bound)
MAX_BOX_SHIFT = 0.05  # the mean centre offset of matched boxes, in box sizes, is larger than this (and significant)
MIN_BOX_IOU = 0.85  # the median IoU of matched boxes is below this (its 95% upper bound)
MAX_MAP50_DROP = 0.01  # the 95% lower bound of the mAP@0.5 drop is above this
MIN_BOOTSTRAP_IMAGES = 10  # fewer check images give no mAP interval (resampling 1 image gives a point, a few a false width)
BOOTSTRAP_SAMPLES = 1000
MATCH_IOU = 0.5
RECALL_POINTS = np.linspace(0.0, 1.0, 101)  # COCO's interpolation


def match(a: Detections, b: Detections, min_score: float = SHOWN, iou_threshold: float = MATCH_IOU) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of the same object in two models' detections of one image: each detection of ``a`` scoring at least
    ``min_score`` (best first) takes the unused detection of ``b`` of the same class with the highest IoU, if that is
    at least ``iou_threshold``, whatever ``b``'s score (a box just under a threshold in one file is still the same
    decision). Returns (indices into ``a`` ``[P]``, indices into ``b`` ``[P]``)."""
    ia, ib = [], []
    todo = np.where(a.scores >= min_score)[0]
    if not len(todo) or not len(b):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    iou = box_iou_yxyx(a.boxes[todo], b.boxes)
    iou = np.where(a.classes[todo][:, None] == b.classes[None, :], iou, -1.0)
    used = np.zeros(len(b), bool)
    for row in np.argsort(-a.scores[todo], kind="stable"):
        cand = np.where(used, -1.0, iou[row])
        j = int(np.argmax(cand))
        if cand[j] >= iou_threshold:
            used[j] = True
            ia.append(todo[row])
            ib.append(j)
    return np.asarray(ia, np.int64), np.asarray(ib, np.int64)


def quantile_interval(x: np.ndarray, p: float, alternative: str = "two-sided") -> tuple[float, float]:
    """Distribution-free 95% confidence interval of the ``p`` quantile of the population ``x`` ``[N]`` was drawn from
    (order statistics of a binomial count: :func:`scipy.stats.quantile_test`); ``alternative="greater"`` gives a
    one-sided lower bound (upper end inf), ``"less"`` an upper bound (lower end -inf). Too few values for the interval: (-inf, inf)."""
    from scipy.stats import quantile_test

    if len(x) == 0:
        return -np.inf, np.inf
    ci = quantile_test(np.asarray(x, np.float64), q=0.0, p=p, alternative=alternative).confidence_interval(0.95)
    lo, hi = float(ci.low), float(ci.high)
    return (-np.inf if np.isnan(lo) else lo), (np.inf if np.isnan(hi) else hi)


def finite(bounds: Sequence[float]) -> list[float | None]:
    """Interval ends for a JSON report: an unbounded end (inf) as None."""
    return [float(b) if np.isfinite(b) else None for b in bounds]


def wilson_upper(k: int, n: int, z: float = 1.96) -> float:
    """Upper end of the Wilson score interval of a proportion ``k / n`` (1.0 when ``n`` is 0)."""
    if n == 0:
        return 1.0
    p = k / n
    centre = p + z * z / (2 * n)
    margin = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return float(min(1.0, (centre + margin) / (1 + z * z / n)))


@dataclasses.dataclass
class ImageMatches:
    """One image's detections judged against its ground truth, for mAP@0.5: per class, the detections' scores,
    whether each is a true positive (COCO rule: greedy by score, each ground truth once, at most 100 per class and image) and
    the number of ground-truth boxes."""

    scores: dict[int, np.ndarray]
    tp: dict[int, np.ndarray]
    n_gt: dict[int, int]


def image_matches(det: Detections, gt_boxes: np.ndarray, gt_classes: np.ndarray, classes: Sequence[int],
                  max_detections: int = 100, iou_threshold: float = 0.5) -> ImageMatches:
    """:class:`ImageMatches` of one image (``gt_boxes`` ``[G, 4]`` normalized yxyx, ``gt_classes`` ``[G]`` ids), matched
    by :func:`mask_od.evaluate.match_detections` (the COCO rule the evaluation uses)."""
    from mask_od.evaluate import Sample, match_detections

    gt_boxes = np.asarray(gt_boxes, np.float32).reshape(-1, 4)
    gt_classes = np.asarray(gt_classes, np.int64).reshape(-1)
    d = det.select(np.sort(np.concatenate([np.where(det.classes == c)[0][:max_detections] for c in classes])))
    hit = match_detections(Sample(0, 0, 0, gt_boxes, gt_classes, d), iou_threshold)
    scores, tp, n_gt = {}, {}, {}
    for c in classes:
        mine = d.classes == c
        scores[c], tp[c], n_gt[c] = d.scores[mine], hit[mine], int((gt_classes == c).sum())
    return ImageMatches(scores, tp, n_gt)


def average_precision(scores: np.ndarray, tp: np.ndarray, n_gt: int) -> float:
    """COCO's 101-point interpolated average precision of detections (``scores`` ``[N]``, ``tp`` ``[N]`` bool) against
    ``n_gt`` ground-truth boxes (NaN when there is none)."""
    return float(_weighted_ap(np.asarray(scores), np.asarray(tp, bool), np.ones((1, len(scores))), np.array([n_gt]))[0])


def _weighted_ap(scores: np.ndarray, tp: np.ndarray, weights: np.ndarray, n_gt: np.ndarray) -> np.ndarray:
    """COCO's 101-point AP of ``B`` weighted copies of one class's detections: ``weights`` ``[B, N]`` (how often each
    detection's image was drawn), ``n_gt`` ``[B]`` ground-truth boxes drawn. Returns ``[B]`` (NaN where ``n_gt`` is 0)."""
    order = np.argsort(-scores, kind="mergesort")
    hits, w = tp[order], weights[:, order]
    ctp, cfp = np.cumsum(w * hits, axis=1), np.cumsum(w * ~hits, axis=1)
    out = np.full(len(n_gt), np.nan)
    for b in np.where(n_gt > 0)[0]:
        if not len(hits):
            out[b] = 0.0
            continue
        recall = ctp[b] / n_gt[b]
        precision = ctp[b] / np.maximum(ctp[b] + cfp[b], np.finfo(np.float64).eps)
        precision = np.maximum.accumulate(precision[::-1])[::-1]
        idx = np.searchsorted(recall, RECALL_POINTS, side="left")
        out[b] = np.mean(np.where(idx < len(precision), precision[np.minimum(idx, len(precision) - 1)], 0.0))
    return out


def map50(matches: Sequence[ImageMatches], classes: Sequence[int], take: np.ndarray | None = None) -> np.ndarray | float:
    """mAP@0.5 over the classes with ground truth, of all images, or of ``take`` ``[B, n]`` resamples (image indices,
    repeats allowed): then ``[B]``."""
    one = take is None
    take = np.arange(len(matches))[None] if one else np.asarray(take)
    counts = np.stack([np.bincount(t, minlength=len(matches)) for t in take]).astype(np.float64)  # [B, images]
    aps = []
    for c in classes:
        img = np.concatenate([np.full(len(m.scores[c]), i) for i, m in enumerate(matches)]).astype(np.int64)
        s = np.concatenate([m.scores[c] for m in matches])
        t = np.concatenate([m.tp[c] for m in matches]).astype(bool)
        n_gt = counts @ np.array([m.n_gt[c] for m in matches], np.float64)
        aps.append(_weighted_ap(s, t, counts[:, img], n_gt))
    aps = np.stack(aps) if aps else np.zeros((1, len(take)))
    with np.errstate(all="ignore"):
        m = np.where(np.isnan(aps).all(0), 0.0, np.nanmean(np.where(np.isnan(aps).all(0), 0.0, aps), 0))
    return float(m[0]) if one else m


def map50_drop_interval(ref: Sequence[ImageMatches], other: Sequence[ImageMatches], classes: Sequence[int],
                        samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> tuple[float, float | None, float | None]:
    """mAP@0.5 of ``ref`` minus that of ``other`` on the same images, and its 95% interval from a paired bootstrap
    (the images resampled with replacement, both models scored on each resample). Returns (drop, low, high); low and
    high are None on fewer than :data:`MIN_BOOTSTRAP_IMAGES` images (no interval can be had from so few)."""
    drop = map50(ref, classes) - map50(other, classes)
    if len(ref) < MIN_BOOTSTRAP_IMAGES:
        return float(drop), None, None
    take = np.random.default_rng(seed).integers(0, len(ref), (samples, len(ref)))
    drops = map50(ref, classes, take) - map50(other, classes, take)
    lo, hi = np.percentile(drops, [2.5, 97.5])
    return float(drop), float(lo), float(hi)


def compare(ref: Sequence[Detections], other: Sequence[Detections], gt: Sequence[tuple[np.ndarray, np.ndarray]],
            sizes: Sequence[tuple[int, int]], label_map: Mapping[int, str], min_score: float = SHOWN) -> dict:
    """How ``other`` (a TFLite file) decides against ``ref`` (its SavedModel) on the same images (``gt``: per image
    (boxes ``[G, 4]`` normalized yxyx, classes ``[G]``); ``sizes``: per image (height, width) in pixels).

    Detections scoring at least ``min_score`` in one model are looked for in the other (:func:`match`). Returns a
    JSON-friendly dict: ``found`` / ``ref_shown`` (the reference's detections the file also makes), ``kept`` /
    ``other_shown`` (the file's detections the reference also makes), ``agreement`` (``found / ref_shown``),
    ``score_shift`` (median of file minus reference score over matched pairs) with its 95% interval
    ``score_shift_ci95``, ``score_spread`` (90th percentile of the absolute difference) with its 95% lower bound
    ``score_spread_low95`` (intervals of :func:`quantile_interval`; None where too few pairs bound them), ``box_iou`` (median IoU of matched boxes) with its one-sided 95% upper bound ``box_iou_high95``, ``box_shift`` (mean centre offset
    (dy, dx) in box sizes) with ``box_shift_se`` (its standard error), ``detections_per_class`` of each model at any
    score (``ref_shown_per_class``: the reference's at ``min_score`` or more), and ``map50_drop`` with its bootstrap interval ``map50_drop_ci95``."""
    found = ref_shown = kept = other_shown = 0
    dscore, ious, offsets = [], [], []
    classes = list(label_map)
    for r, o, (h, w) in zip(ref, other, sizes):
        ia, ib = match(r, o, min_score)
        ref_shown += int((r.scores >= min_score).sum())
        found += len(ia)
        ja, _ = match(o, r, min_score)
        other_shown += int((o.scores >= min_score).sum())
        kept += len(ja)
        if len(ia):
            dscore.append(o.scores[ib] - r.scores[ia])
            rb, ob = r.boxes[ia].astype(np.float64), o.boxes[ib].astype(np.float64)
            ious.append(np.diag(box_iou_yxyx(rb, ob)))
            size = np.stack([rb[:, 2] - rb[:, 0], rb[:, 3] - rb[:, 1]], 1)
            centre = lambda b: np.stack([b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]], 1) / 2  # noqa: E731
            offsets.append((centre(ob) - centre(rb)) / np.maximum(size, 1e-6))
    ds = np.concatenate(dscore) if dscore else np.zeros(0)
    io = np.concatenate(ious) if ious else np.zeros(0)
    off = np.concatenate(offsets) if offsets else np.zeros((0, 2))
    ref_m = [image_matches(r, b, c, classes) for r, (b, c) in zip(ref, gt)]
    oth_m = [image_matches(o, b, c, classes) for o, (b, c) in zip(other, gt)]
    drop, lo, hi = map50_drop_interval(ref_m, oth_m, classes)
    count = lambda ds_: {n: int(sum(int((d.classes == i).sum()) for d in ds_)) for i, n in label_map.items()}  # noqa: E731
    return {
        "images": len(ref), "min_score": min_score, "pairs": len(ds),
        "found": found, "ref_shown": ref_shown, "kept": kept, "other_shown": other_shown,
        "agreement": found / ref_shown if ref_shown else None,
        "score_shift": float(np.median(ds)) if len(ds) else None,
        "score_shift_ci95": finite(quantile_interval(ds, 0.5)) if len(ds) else None,
        "score_spread": float(np.percentile(np.abs(ds), 90)) if len(ds) else None,
        "score_spread_low95": finite(quantile_interval(np.abs(ds), 0.9, "greater"))[0] if len(ds) else None,
        "max_score_diff": float(np.abs(ds).max()) if len(ds) else None,
        "box_iou": float(np.median(io)) if len(io) else None,
        "box_iou_high95": finite(quantile_interval(io, 0.5, "less"))[1] if len(io) else None,
        "box_shift": off.mean(0).tolist() if len(off) else None,
        "box_shift_se": (off.std(0, ddof=1) / np.sqrt(len(off))).tolist() if len(off) > 1 else None,
        "detections_per_class": count(other), "ref_detections_per_class": count(ref),
        "ref_shown_per_class": count([r.select(r.scores >= min_score) for r in ref]),
        "map50_drop": drop, "map50_drop_ci95": [lo, hi],
    }


def counted(n: int, noun: str) -> str:
    """``n`` and the noun, plural unless ``n`` is 1: "1 image", "3 images"."""
    return f"{n} {noun}{'s' * (n != 1)}"


def parity_failures(c: dict, name: str, max_map50_drop: float = MAX_MAP50_DROP) -> list[str]:
    """Why the file ``name`` does not decide like its reference, from :func:`compare`'s figures (empty: it does).
    Every rule is sized by the check set: a handful of images cannot refuse a file for one or two detections, and a
    large set cannot hide a real bug behind an average."""
    out = []
    on = f"on {counted(c['images'], 'image')}"
    # a class the SavedModel detects confidently (a few faint ones may round away in int8) and the file never outputs
    gone = [n for n, k in c["ref_shown_per_class"].items() if k and not c["detections_per_class"].get(n)]
    if gone:
        out.append(f"{name} never outputs {', '.join(gone)} (the SavedModel does: "
                   + ", ".join(f"{n} {c['ref_shown_per_class'][n]}" for n in gone)
                   + f" detections scoring >= {c['min_score']} {on})")
    for k, n, what in ((c["found"], c["ref_shown"], "of the SavedModel's detections scoring"),
                       (c["kept"], c["other_shown"], "of its own detections scoring")):
        # the share found by both: refused only when even its 95% upper bound is short (few detections: wide bound)
        if n and wilson_upper(k, n) < MIN_AGREEMENT:
            out.append(f"{name} agrees on only {k} of {n} {what} >= {c['min_score']} (same class, IoU >= {MATCH_IOU}) "
                       f"{on}; at least {MIN_AGREEMENT:.0%} expected")
    if c["pairs"]:
        # the median shift is refused when its whole 95% interval lies past the allowance (a few pairs on one or two
        # images give a wide interval: under 6 pairs it is unbounded, with 6 to 8 it spans them all); a report made
        # before the intervals were recorded is judged on the figures themselves
        ci = c.get("score_shift_ci95", [c["score_shift"]] * 2)
        lo, hi = (-np.inf if ci[0] is None else ci[0]), (np.inf if ci[1] is None else ci[1])
        spread = c.get("score_spread_low95", c["score_spread"])
        if lo > MAX_SCORE_SHIFT or hi < -MAX_SCORE_SHIFT:
            out.append(f"{name} scores are shifted by {c['score_shift']:+.3f} (median over {c['pairs']} matched "
                       f"detections {on}, 95% interval {lo:+.3f} to {hi:+.3f}; at most {MAX_SCORE_SHIFT} allowed): "
                       "thresholds would not mean the same")
        elif spread is not None and spread > MAX_SCORE_SPREAD:
            out.append(f"{name} scores differ from the SavedModel's by {c['score_spread']:.3f} at the 90th percentile of "
                       f"{c['pairs']} matched detections {on} (95% lower bound {spread:.3f}; at most {MAX_SCORE_SPREAD} allowed)")
        # the median IoU is refused when even its 95% upper bound is short (under 5 pairs it is unbounded: two boxes
        # of a model trained a few steps cannot refuse a file); a report made before the bound was recorded: the median
        iou_high = c.get("box_iou_high95", c["box_iou"])
        if iou_high is not None and iou_high < MIN_BOX_IOU:
            bound = f"95% upper bound {iou_high:.2f}; " if "box_iou_high95" in c else ""
            out.append(f"{name} boxes overlap the SavedModel's at a median IoU of {c['box_iou']:.2f} over {c['pairs']} "
                       f"matched detections {on} ({bound}at least {MIN_BOX_IOU} expected)")
        if c["box_shift_se"] is not None:
            shift, se = np.abs(c["box_shift"]), np.asarray(c["box_shift_se"])
            if np.any((shift > MAX_BOX_SHIFT) & (shift > 3 * se)):
                out.append(f"{name} boxes are shifted by (dy, dx) = ({c['box_shift'][0]:+.3f}, {c['box_shift'][1]:+.3f}) "
                           f"box sizes on average over {c['pairs']} matched detections {on} (at most {MAX_BOX_SHIFT})")
    lo = c["map50_drop_ci95"][0]  # None: too few images to judge mAP (the rules above still judge the detections)
    if lo is not None and lo > max_map50_drop:
        out.append(f"{name} mAP@0.5 is {100 * c['map50_drop']:.1f} points below the SavedModel's {on} (95% interval "
                   f"{100 * lo:.1f} to {100 * c['map50_drop_ci95'][1]:.1f} points, paired bootstrap; allowed "
                   f"{100 * max_map50_drop:.1f})")
    return out
