"""Copy-paste of faces (an A/B lever of recipe_face_mask.py --copy_paste): extra training photos in which faces of the
weaker classes, cut from other training photos, are pasted at the photo's own face scale.

python benchmarks/copy_paste_faces.py TRAIN_LIST LABEL_MAP OUT_RECORD [--copies 1] [--seed 0] [--overwrite]
TRAIN_LIST: one VOC XML path per line (the split's train.txt). Each training photo gets ``copies`` pasted versions with
1-3 faces each, drawn half from ``mask_weared_incorrect`` and half from ``without_mask`` (faces of 8 px or more,
never from the same photo), scaled to the median face height of the photo they go into (x0.8-1.25; enlarged at most 2x), placed where they
touch no box, with a feathered edge (5% of the side). Written as OD API TFRecord examples; the source photos are only
read. Faces are boxes, not masks: the box's background comes along (Ghiasi et al. 2021 paste instance masks).
With repeat-factor sampling (``repeat_threshold``) the pasted photos make the pasted classes more frequent, so the
original photos of those classes are repeated less (face-mask split: mask_weared_incorrect x2.97 -> x1.59)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

PASTE = ("mask_weared_incorrect", "without_mask")


def face_bank(items, min_px: int = 8):
    """[(photo index, class name, RGB crop with a 10% margin, box xyxy inside the crop)] of the classes in PASTE."""
    bank = []
    for k, (ann, rgb) in enumerate(items):
        h, w = rgb.shape[:2]
        for name, (x0, y0, x1, y1) in zip(ann.names, ann.boxes_xyxy):
            if name not in PASTE or min(x1 - x0, y1 - y0) < min_px:
                continue
            mx, my = 0.1 * (x1 - x0), 0.1 * (y1 - y0)
            cx0, cy0 = int(max(0, x0 - mx)), int(max(0, y0 - my))
            cx1, cy1 = int(min(w, np.ceil(x1 + mx))), int(min(h, np.ceil(y1 + my)))
            bank.append((k, name, rgb[cy0:cy1, cx0:cx1].copy(), np.array([x0 - cx0, y0 - cy0, x1 - cx0, y1 - cy0])))
    return bank


def _feather(h: int, w: int) -> np.ndarray:
    """[h, w, 1] alpha: 1 inside, falling linearly over 5% of each side (at least 1 px) to 1/(r+1) at the edge."""
    def ramp(n):
        r = max(1, int(round(0.05 * n)))
        i = np.arange(n)
        return np.clip(np.minimum(i + 1, n - i) / (r + 1), 0, 1)
    return (np.outer(ramp(h), ramp(w)))[..., None]


def paste_faces(ann, rgb, bank, k: int, rng: np.random.Generator):
    """(RGB copy with up to ``k`` pasted faces, names, boxes xyxy float) for one photo; faces that find no free place
    in 30 tries are left out."""
    import cv2

    from mask_od.boxes import box_iou_yxyx

    h, w = rgb.shape[:2]
    out = rgb.astype(np.float32)
    boxes = [b.astype(np.float64) for b in ann.boxes_xyxy]
    names = list(ann.names)
    face_h = float(np.median(ann.boxes_xyxy[:, 3] - ann.boxes_xyxy[:, 1])) if ann.num_boxes else 0.1 * h
    by_class = {c: [f for f in bank if f[1] == c] for c in PASTE}
    for _ in range(k):
        target = float(np.clip(face_h * rng.uniform(0.8, 1.25), 10, 0.4 * h))
        pool = [f for f in by_class[PASTE[0] if rng.random() < 0.5 else PASTE[1]] if 2 * (f[3][3] - f[3][1]) >= target]
        if not pool:  # no face of that class large enough (upscaled at most 2x: more would only paste a blur)
            continue
        _, name, crop, inner = pool[rng.integers(len(pool))]
        s = target / max(1.0, inner[3] - inner[1])
        ch, cw = max(2, int(round(crop.shape[0] * s))), max(2, int(round(crop.shape[1] * s)))
        if ch >= h or cw >= w:
            continue
        piece = cv2.resize(crop, (cw, ch), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR).astype(np.float32)
        for _try in range(30):
            y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            cand_yxyx = np.array([[y0, x0, y0 + ch, x0 + cw]], np.float64)
            if box_iou_yxyx(cand_yxyx, np.reshape(boxes, (-1, 4))[:, [1, 0, 3, 2]]).max(initial=0) == 0:  # touches no box
                break
        else:
            continue
        a = _feather(ch, cw)
        out[y0:y0 + ch, x0:x0 + cw] = a * piece + (1 - a) * out[y0:y0 + ch, x0:x0 + cw]
        boxes.append(np.array([x0 + inner[0] * s, y0 + inner[1] * s, x0 + inner[2] * s, y0 + inner[3] * s]).clip(0, [w, h, w, h]))
        names.append(name)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8), names, np.array(boxes, np.float32).reshape(-1, 4)


def write_copy_paste_record(train_list: Path | str, label_map: Path | str, out_record: Path | str, copies: int = 1,
                            seed: int = 0, overwrite: bool = False) -> dict:
    """Write ``out_record`` (through a temporary name; an existing one only with ``overwrite``) with ``copies`` pasted
    versions of each photo of ``train_list``; returns counts: photos written and faces pasted per class.
    Raises :class:`~mask_od.annotations.AnnotationError` / :class:`~mask_od.label_map.LabelMapError` naming the file."""
    import dataclasses

    import cv2
    import tensorflow as tf

    from mask_od.annotations import AnnotationError, load_voc_example
    from mask_od.fileio import atomic_path, refuse_existing
    from mask_od.label_map import name_to_id, read_label_map, validate_names
    from mask_od.tfrecord import build_tf_example

    refuse_existing(out_record, overwrite, file=True)  # before reading any photo
    lm = read_label_map(label_map)
    ids = name_to_id(lm)
    items = [load_voc_example(p.strip()) for p in Path(train_list).read_text().splitlines() if p.strip()]
    validate_names({a.xml_path: a.names for a, _ in items}, lm, label_map)
    bank = face_bank(items)
    rng = np.random.default_rng(seed)
    counts = {"photos": 0, **{c: 0 for c in PASTE}}
    with atomic_path(out_record, overwrite=overwrite) as tmp, tf.io.TFRecordWriter(str(tmp)) as wr:
        for c in range(copies):
            for j, (ann, rgb) in enumerate(items):
                others = [f for f in bank if f[0] != j]
                img, names, boxes = paste_faces(ann, rgb, others, int(rng.integers(1, 4)), rng)
                for n in names[ann.num_boxes:]:
                    counts[n] += 1
                ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
                if not ok:
                    raise AnnotationError(f"{ann.image_path}: cannot encode its pasted version as JPEG")
                pasted = dataclasses.replace(ann, image_path=Path(f"paste{c}_{ann.image_path.name}"), names=names,
                                             boxes_xyxy=boxes, difficult=list(ann.difficult) + [0] * (len(names) - ann.num_boxes),
                                             truncated=list(ann.truncated) + [0] * (len(names) - ann.num_boxes))
                wr.write(build_tf_example(pasted, buf.tobytes(), ids).SerializeToString(deterministic=True))
                counts["photos"] += 1
    return counts


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("train_list")
    p.add_argument("label_map")
    p.add_argument("out_record")
    p.add_argument("--copies", type=int, default=1, help="pasted versions of each photo (default 1)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0): the same record for the same seed")
    p.add_argument("--overwrite", action="store_true", help="replace OUT_RECORD if it exists")
    a = p.parse_args()
    from mask_od.cli import error_exit
    from mask_od.errors import MaskODError

    try:
        print(write_copy_paste_record(a.train_list, a.label_map, a.out_record, a.copies, a.seed, a.overwrite))
    except (MaskODError, FileNotFoundError, FileExistsError) as e:
        return error_exit(e)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
