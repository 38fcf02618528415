"""COCO detection metrics (pycocotools) with per-class AP, and the plots people look at: PR, F1, confusion, samples."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Mapping, Sequence

import numpy as np

from mask_od.boxes import box_iou_yxyx
from mask_od.detections import CONFUSION, Detections
from mask_od.errors import MaskODError

if TYPE_CHECKING:
    from mask_od.config import Config

PredictFn = Callable[[np.ndarray], Detections]  # uint8 RGB [H, W, 3] -> detections (or a dict with their three arrays)
COCO_NAMES = ["mAP", "mAP50", "mAP75", "mAP_small", "mAP_medium", "mAP_large", "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large"]
EVAL_FILES = ("metrics.json", "pr_curve.png", "f1_curve.png", "confusion_matrix.png", "predictions.png")  # what evaluate writes
METRICS_KEYS = {"mAP", "mAP50", "per_class", "confusion_matrix", "f1", "images"}  # in every metrics.json it writes


class EvaluationError(MaskODError, ValueError):
    """Evaluation output cannot be written where asked (a folder holding other files); the message names it."""


@dataclasses.dataclass
class Sample:
    """One evaluated image: ground truth (boxes normalized yxyx, label-map ids) and the model's detections."""

    image_id: int
    width: int
    height: int
    gt_boxes: np.ndarray
    gt_classes: np.ndarray
    detections: Detections
    name: str = ""
    image: np.ndarray | None = None  # kept for the first few samples, for the prediction grid


def _to_coco_xywh(boxes_yxyx: np.ndarray, w: int, h: int) -> np.ndarray:
    b = np.asarray(boxes_yxyx, np.float64).reshape(-1, 4)
    return np.stack([b[:, 1] * w, b[:, 0] * h, (b[:, 3] - b[:, 1]) * w, (b[:, 2] - b[:, 0]) * h], axis=1)


def coco_metrics(samples: Sequence[Sample], label_map: Mapping[int, str]) -> dict:
    """COCO box metrics: mAP@[.5:.95], mAP50, mAP75, size breakdown, AR, and per-class AP / AP50, plus the
    precision array (IoU .5, area all, 100 dets) per class for PR curves. Classes without ground truth get None."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, anns, dets = [], [], []
    for s in samples:
        images.append({"id": s.image_id, "width": s.width, "height": s.height})
        for box, c in zip(_to_coco_xywh(s.gt_boxes, s.width, s.height), s.gt_classes):
            anns.append({"id": len(anns) + 1, "image_id": s.image_id, "category_id": int(c), "bbox": box.tolist(),
                         "area": float(box[2] * box[3]), "iscrowd": 0})
        for box, c, sc in zip(_to_coco_xywh(s.detections.boxes, s.width, s.height), s.detections.classes, s.detections.scores):
            dets.append({"image_id": s.image_id, "category_id": int(c), "bbox": box.tolist(), "score": float(sc)})
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": i, "name": n} for i, n in label_map.items()]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes(dets) if dets else None
    if dt is None or not anns:
        out = {k: 0.0 for k in COCO_NAMES}
        out["per_class"] = {n: {"AP": None if not anns else 0.0, "AP50": None if not anns else 0.0} for n in label_map.values()}
        out["pr_curves"] = {}
        return out
    ev = COCOeval(gt, dt, "bbox")
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    out = {k: float(max(v, 0.0)) for k, v in zip(COCO_NAMES, ev.stats)}
    prec = ev.eval["precision"]  # [T, R, K, A, M]
    cat_ids = ev.params.catIds
    per_class, curves = {}, {}
    n_gt = {i: int(sum((s.gt_classes == i).sum() for s in samples)) for i in label_map}
    for k, cid in enumerate(cat_ids):
        name = label_map[cid]
        if n_gt[cid] == 0:
            per_class[name] = {"AP": None, "AP50": None, "gt": 0}
            continue
        p_all, p50 = prec[:, :, k, 0, 2], prec[0, :, k, 0, 2]
        per_class[name] = {
            "AP": float(np.mean(np.where(p_all > -1, p_all, 0))),
            "AP50": float(np.mean(np.where(p50 > -1, p50, 0))),
            "gt": n_gt[cid],
        }
        curves[name] = np.where(p50 > -1, p50, 0).tolist()
    out["per_class"] = per_class
    out["pr_curves"] = curves
    return out


def match_detections(s: Sample, iou_threshold: float = 0.5) -> np.ndarray:
    """Per detection (in ``s``'s order): True where it matches a same-class ground truth at IoU >= threshold, greedy
    by descending score, each ground truth used once (the COCO rule)."""
    tp = np.zeros(len(s.detections.scores), bool)
    if len(s.detections.scores) == 0 or len(s.gt_classes) == 0:
        return tp
    iou = box_iou_yxyx(s.detections.boxes, s.gt_boxes)
    used = np.zeros(len(s.gt_classes), bool)
    for d in np.argsort(-s.detections.scores, kind="stable"):
        cand = np.where((s.gt_classes == s.detections.classes[d]) & ~used & (iou[d] >= iou_threshold))[0]
        if len(cand):
            g = cand[np.argmax(iou[d, cand])]
            used[g] = tp[d] = True
    return tp


def f1_curves(samples: Sequence[Sample], label_map: Mapping[int, str], iou_threshold: float = 0.5) -> dict:
    """Precision, recall and F1 per class against confidence thresholds 0.00..1.00 (101 points)."""
    thr = np.linspace(0, 1, 101)
    tps = [match_detections(s, iou_threshold) for s in samples]
    out = {"thresholds": thr.tolist(), "classes": {}}
    for cid, name in label_map.items():
        n_gt = sum(int((s.gt_classes == cid).sum()) for s in samples)
        sc = np.concatenate([s.detections.scores[s.detections.classes == cid] for s in samples] or [np.zeros(0)])
        tp = np.concatenate([t[s.detections.classes == cid] for s, t in zip(samples, tps)] or [np.zeros(0, bool)])
        n_det = np.array([(sc >= t).sum() for t in thr])
        n_tp = np.array([tp[sc >= t].sum() for t in thr])
        p = np.where(n_det > 0, n_tp / np.maximum(n_det, 1), 1.0)
        r = n_tp / n_gt if n_gt else np.zeros_like(thr)
        f1 = np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-12), 0)
        out["classes"][name] = {"precision": p.tolist(), "recall": r.tolist(), "f1": f1.tolist(), "gt": n_gt}
    return out


def confusion_matrix(
    samples: Sequence[Sample], label_map: Mapping[int, str], score_threshold: float = CONFUSION, iou_threshold: float = 0.5
) -> np.ndarray:
    """``[K+1, K+1]`` counts, rows = true class, columns = predicted class, index K = background (missed ground truth
    in the last column, false detections in the last row). Matching ignores class, greedy by IoU."""
    ids = list(label_map)
    k = len(ids)
    idx = {c: i for i, c in enumerate(ids)}
    cm = np.zeros((k + 1, k + 1), np.int64)
    for s in samples:
        keep = s.detections.scores >= score_threshold
        boxes, classes = s.detections.boxes[keep], s.detections.classes[keep]
        iou = box_iou_yxyx(s.gt_boxes, boxes) if len(boxes) and len(s.gt_boxes) else np.zeros((len(s.gt_boxes), len(boxes)))
        gt_used, det_used = np.zeros(len(s.gt_boxes), bool), np.zeros(len(boxes), bool)
        for flat in np.argsort(-iou, axis=None, kind="stable"):
            g, d = np.unravel_index(flat, iou.shape)
            if iou[g, d] < iou_threshold:
                break
            if not gt_used[g] and not det_used[d]:
                gt_used[g] = det_used[d] = True
                cm[idx[int(s.gt_classes[g])], idx.get(int(classes[d]), k)] += 1
        for g in np.where(~gt_used)[0]:
            cm[idx[int(s.gt_classes[g])], k] += 1
        for d in np.where(~det_used)[0]:
            cm[k, idx.get(int(classes[d]), k)] += 1
    return cm


def collect_samples(
    predict: PredictFn, examples: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray, str]], progress: bool = True,
    keep_images: int = 6,
) -> list[Sample]:
    """Run ``predict`` on (uint8 RGB image, gt normalized yxyx, gt classes, name) tuples; the first ``keep_images``
    samples keep their image for plots."""
    out = []
    it = examples
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(examples, desc="evaluate", unit="img")
    for i, (img, gb, gc, name) in enumerate(it):
        p = predict(img)
        if not isinstance(p, Detections):  # a user's predict function may return a dict of boxes, classes and scores
            p = Detections.from_arrays(p["boxes"], p["classes"], p["scores"])
        out.append(Sample(i + 1, img.shape[1], img.shape[0], np.asarray(gb, np.float32).reshape(-1, 4),
                          np.asarray(gc, np.int64), p, name, img if i < keep_images else None))
    return out


def examples_from_records(records, limit: int | None = None, label_map: Mapping[int, str] | None = None,
                          label_map_name: str = "the label map"):
    """(image, gt boxes, gt classes, name) from TFRecords (decoded with Model Garden's TfExampleDecoder). With
    ``label_map``, the records' class ids and texts are checked against it first (:func:`check_record_labels`)."""
    from mask_od.input_pipeline import check_record_labels

    if label_map is not None:
        check_record_labels(records, dict(label_map), label_map_name)
    return _decoded_examples(records, limit)


def _decoded_examples(records, limit: int | None):
    from mask_od.input_pipeline import iter_decoded

    ds = iter_decoded(records)
    if limit:
        ds = ds.take(limit)
    for d in ds.as_numpy_iterator():
        yield d["image"], d["groundtruth_boxes"], d["groundtruth_classes"], d["source_id"].decode()


def examples_from_voc(xml_dir, label_map: Mapping[int, str], image_dir=None, limit: int | None = None):
    """(image, gt boxes, gt classes, name) from a VOC folder: an iterator over the first ``limit`` XML files (sorted,
    subfolders included). Those files are checked at the call (:func:`mask_od.annotations.parse_voc_files`: every bad
    one in one :class:`~mask_od.annotations.AnnotationError`; class names against the label map: one
    ``LabelMapError``), so a bad folder is refused before any inference; images are decoded again as they are
    iterated (not held in memory)."""
    from mask_od.annotations import list_xml_files, load_voc_example, parse_voc_files, unusable
    from mask_od.boxes import voc_xyxy_to_norm_yxyx
    from mask_od.label_map import name_to_id, validate_names

    files = list_xml_files(xml_dir)[:limit]
    anns, errors = parse_voc_files(files, image_dir)
    if errors:
        raise unusable(errors, len(files))
    validate_names({a.xml_path: a.names for a in anns}, label_map)
    ids = name_to_id(label_map)

    def examples():
        for a in anns:
            ann, img = load_voc_example(a.xml_path, image_dir)
            yield img, voc_xyxy_to_norm_yxyx(ann.boxes_xyxy, ann.width, ann.height), np.array([ids[n] for n in ann.names]), ann.image_path.name

    return examples()


def summarize(samples: Sequence[Sample], label_map: Mapping[int, str], score_threshold: float = CONFUSION) -> dict:
    """All metrics of a set of samples as one JSON-friendly dict."""
    m = coco_metrics(samples, label_map)
    m["f1"] = f1_curves(samples, label_map)
    m["confusion_matrix"] = {"labels": list(label_map.values()) + ["background"],
                             "score_threshold": score_threshold,
                             "counts": confusion_matrix(samples, label_map, score_threshold).tolist()}
    m["images"] = len(samples)
    return m


def is_evaluation_dir(path: Path | str) -> bool:
    """Whether the folder ``path`` holds an earlier evaluation by mask_od: its ``metrics.json`` is one
    :func:`evaluate` wrote (a JSON object with :data:`METRICS_KEYS`)."""
    try:
        m = json.loads((Path(path) / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(m, dict) and METRICS_KEYS <= set(m)


def check_out_dir(out_dir: Path | str) -> None:
    """``out_dir`` may receive ``metrics.json`` and the plots: it is new, empty, an earlier evaluation
    (:func:`is_evaluation_dir`, e.g. a run's ``eval/``) or holds only TensorBoard event files (a run's ``eval/`` before
    its final evaluation). Else :class:`EvaluationError` naming it: a folder of the user's own files is never written
    into (its ``metrics.json`` or ``pr_curve.png`` would be replaced); an ``OutputPathError`` when it is a file."""
    from mask_od.fileio import refuse_file_in_path

    out_dir = Path(out_dir)
    refuse_file_in_path(out_dir)
    if not out_dir.is_dir() or is_evaluation_dir(out_dir):
        return
    held = sorted(p.name for p in out_dir.iterdir())
    if all(n.startswith("events.out.tfevents.") for n in held):
        return
    raise EvaluationError(f"{out_dir} holds files ({', '.join(held[:3])}{' ...' if len(held) > 3 else ''}) and is not an "
                          "earlier evaluation by mask_od (no metrics.json that scripts/evaluate.py wrote): refusing to write "
                          "metrics.json and plots there; choose a new or empty folder (--out_dir)")


def write_evaluation(samples: Sequence[Sample], m: dict, label_map: Mapping[int, str], out_dir: Path | str, plots: bool = True) -> None:
    """Write ``metrics.json`` (and with ``plots`` the PNG plots, their paths put in ``m["plots"]``) to ``out_dir``,
    checked by :func:`check_out_dir`. All are made in a temporary folder beside it, then renamed into place
    (``metrics.json`` last), so a failure leaves an earlier evaluation as it was; an earlier evaluation's files the new
    one does not make are removed, other files there (a run's TensorBoard events) are kept."""
    import os

    from mask_od.fileio import remove_path, temp_sibling

    out_dir = Path(out_dir)
    check_out_dir(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(out_dir)
    tmp.mkdir()
    try:
        if plots:
            from mask_od.evaluate_plots import plot_all

            m["plots"] = {k: str(out_dir / Path(v).name) for k, v in plot_all(samples, m, label_map, tmp).items()}
        (tmp / "metrics.json").write_text(json.dumps(m, indent=1), encoding="utf-8")
        if not out_dir.exists():
            os.replace(tmp, out_dir)
            return
        made = sorted((p.name for p in tmp.iterdir()), key=lambda n: n == "metrics.json")
        for name in made:
            os.replace(tmp / name, out_dir / name)
        for name in set(EVAL_FILES) - set(made):  # a plot of the earlier evaluation this one does not make
            remove_path(out_dir / name)
    finally:
        remove_path(tmp)


def evaluate(
    predict: PredictFn,
    examples: Iterable,
    label_map: Mapping[int, str],
    out_dir: Path | str | None = None,
    plots: bool = True,
    score_threshold: float = CONFUSION,
    progress: bool = True,
) -> dict:
    """Evaluate a predictor; with ``out_dir`` write ``metrics.json`` and the PNG plots there (:func:`write_evaluation`:
    a folder of other files is refused before any inference, :func:`check_out_dir`). Returns the metrics
    (``mAP``, ``mAP50``, ``mAP75``, ``AR100``, ``per_class`` ...; ``plots`` maps plot names to files)."""
    if out_dir is not None:
        check_out_dir(out_dir)  # before any inference
    samples = collect_samples(predict, examples, progress)
    m = summarize(samples, label_map, score_threshold)
    if out_dir is not None:
        write_evaluation(samples, m, label_map, out_dir, plots)
    return m


def format_metrics(m: Mapping) -> str:
    """A short human summary: the headline numbers, AP50 per class, and the classes without ground truth (not scored)."""
    head = f"mAP@[.5:.95] {m['mAP']:.3f}  mAP@0.5 {m['mAP50']:.3f}  mAP@0.75 {m['mAP75']:.3f}  AR@100 {m['AR100']:.3f}"
    per = "  ".join(f"{n}: {v['AP50']:.3f}" for n, v in m["per_class"].items() if v.get("AP50") is not None)
    absent = [n for n, v in m["per_class"].items() if v.get("AP50") is None]
    return (head + ("\nAP@0.5 per class  " + per if per else "")
            + (f"\n{len(absent)} class(es) not scored, no ground truth box in these images: {', '.join(absent)}" if absent else ""))


def evaluate_model(model, config: Config, label_map, records, out_dir=None, limit: int | None = None, progress: bool = False,
                   module=None) -> dict:
    """COCO metrics of an in-memory model on TFRecords, through the same serving function that export saves
    (``module``: that function's :func:`mask_od.inference.make_detection_module` of ``model``, made here if None;
    passing the same one again reads the model's current weights without tracing it again)."""
    from mask_od.inference import detections_from_outputs, make_detection_module

    if module is None:
        module = make_detection_module(model, config)
    predict = lambda img: detections_from_outputs(module.serve(img[None]), label_map)  # noqa: E731
    examples = examples_from_records(records, limit, label_map, f"the run's label map ({config.label_map})")
    return evaluate(predict, examples, label_map, out_dir=out_dir, progress=progress)
