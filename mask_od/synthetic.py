"""The embedded demo dataset: procedurally drawn faces with, without and with badly worn masks (VOC XML + JPEG)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from mask_od.annotations import voc_xml_string
from mask_od.boxes import box_iou_yxyx
from mask_od.fileio import write_bytes_atomic, write_text_atomic
from mask_od.label_map import DEFAULT_CLASSES, write_label_map

SKIN = [(224, 172, 105), (198, 134, 66), (141, 85, 36), (255, 219, 172), (241, 194, 125)]
MASK = [(70, 130, 220), (235, 235, 235), (30, 30, 30), (120, 200, 210)]


@dataclasses.dataclass
class SyntheticDataset:
    """Where :func:`make_synthetic_dataset` wrote its files."""

    image_dir: Path
    xml_dir: Path
    label_map_path: Path
    num_images: int
    boxes_per_class: dict[str, int]


def _draw_face(img: np.ndarray, box: tuple[int, int, int, int], kind: str, rng: np.random.Generator) -> None:
    import cv2

    x0, y0, x1, y1 = box
    cx, cy, w, h = (x0 + x1) // 2, (y0 + y1) // 2, x1 - x0, y1 - y0
    skin = tuple(int(c) for c in SKIN[rng.integers(len(SKIN))])
    cv2.ellipse(img, (cx, cy), (w // 2, h // 2), 0, 0, 360, skin, -1, cv2.LINE_AA)
    hair = tuple(int(c) for c in rng.integers(0, 90, 3))
    cv2.ellipse(img, (cx, y0 + h // 5), (w // 2, h // 5), 0, 180, 360, hair, -1, cv2.LINE_AA)
    eye_y, dx, r = y0 + int(h * 0.40), int(w * 0.18), max(2, w // 14)
    for ex in (cx - dx, cx + dx):
        cv2.circle(img, (ex, eye_y), r, (255, 255, 255), -1, cv2.LINE_AA)
        cv2.circle(img, (ex, eye_y), max(1, r // 2), (40, 30, 20), -1, cv2.LINE_AA)
    nose_y, mouth_y = y0 + int(h * 0.58), y0 + int(h * 0.75)
    nose = (cx, nose_y)
    mask_col = tuple(int(c) for c in MASK[rng.integers(len(MASK))])
    if kind == "without_mask":
        cv2.circle(img, nose, max(1, w // 16), tuple(max(0, c - 40) for c in skin), -1, cv2.LINE_AA)
        cv2.ellipse(img, (cx, mouth_y), (w // 6, h // 16 + 1), 0, 0, 180, (150, 40, 50), max(1, w // 20), cv2.LINE_AA)
    else:
        top = y0 + int(h * (0.50 if kind == "with_mask" else 0.68))
        if kind == "mask_weared_incorrect":  # nose stays out
            cv2.circle(img, nose, max(1, w // 16), tuple(max(0, c - 40) for c in skin), -1, cv2.LINE_AA)
        pts = np.array(
            [[x0 + w // 10, top], [x1 - w // 10, top], [x1 - w // 5, y1 - h // 12], [x0 + w // 5, y1 - h // 12]],
            np.int32,
        )
        cv2.fillPoly(img, [pts], mask_col, cv2.LINE_AA)
        for k in (1, 2):
            y = top + (y1 - h // 12 - top) * k // 3
            cv2.line(img, (x0 + w // 6, y), (x1 - w // 6, y), tuple(max(0, c - 50) for c in mask_col), 1, cv2.LINE_AA)
        cv2.line(img, (x0 + w // 10, top), (x0, y0 + h // 2), (200, 200, 200), 1, cv2.LINE_AA)
        cv2.line(img, (x1 - w // 10, top), (x1, y0 + h // 2), (200, 200, 200), 1, cv2.LINE_AA)


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    import cv2

    c0, c1 = rng.integers(30, 226, 3), rng.integers(30, 226, 3)
    t = np.linspace(0, 1, size)[:, None, None]
    img = (c0 * (1 - t) + c1 * t).astype(np.uint8).repeat(size, axis=1)
    for _ in range(rng.integers(3, 9)):
        p = rng.integers(0, size, 2)
        q = p + rng.integers(10, size // 2, 2)
        cv2.rectangle(img, tuple(int(v) for v in p), tuple(int(v) for v in q), tuple(int(c) for c in rng.integers(0, 256, 3)), -1)
    noise = rng.normal(0, 6, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def render_synthetic_image(
    rng: np.random.Generator, size: int = 320, max_faces: int = 4, weights=(0.5, 0.35, 0.15)
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """One RGB ``[size, size, 3]`` image with 1..max_faces faces; returns (image, names, pixel xyxy boxes)."""
    img = _background(size, rng)
    names: list[str] = []
    boxes: list[tuple[int, int, int, int]] = []
    for _ in range(int(rng.integers(1, max_faces + 1))):
        for _try in range(20):
            w = int(rng.integers(size // 9, size // 3))
            h = int(w * rng.uniform(1.15, 1.35))
            x0, y0 = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
            cand = (x0, y0, x0 + w, y0 + h)
            if not boxes or box_iou_yxyx(np.array([cand]), np.array(boxes)).max() == 0:
                break
        else:
            continue
        kind = DEFAULT_CLASSES[int(rng.choice(3, p=np.asarray(weights) / sum(weights)))]
        _draw_face(img, cand, kind, rng)
        names.append(kind)
        boxes.append(cand)
    return img, names, np.asarray(boxes, np.float64).reshape(-1, 4)


def make_synthetic_dataset(out_dir: Path | str, num_images: int = 160, size: int = 320, seed: int = 0) -> SyntheticDataset:
    """Write ``num_images`` JPEGs + LabelImg VOC XML and a label map under ``out_dir`` (deterministic for a seed).

    Files that already exist with the same name are kept (the dataset is the same for the same seed); generated files
    of an earlier, larger call (``synthetic_NNNN`` numbered ``num_images`` or more) are removed, so that the folder
    holds ``num_images`` images."""
    import re

    import cv2

    out_dir = Path(out_dir)
    image_dir, xml_dir = out_dir / "images", out_dir / "annotations"
    image_dir.mkdir(parents=True, exist_ok=True)
    xml_dir.mkdir(parents=True, exist_ok=True)
    lm_path = out_dir / "label_map.pbtxt"
    if not lm_path.exists():
        write_label_map(DEFAULT_CLASSES, lm_path)
    rng = np.random.default_rng(seed)
    counts = {c: 0 for c in DEFAULT_CLASSES}
    for i in range(num_images):
        img, names, boxes = render_synthetic_image(rng, size)
        for n in names:
            counts[n] += 1
        stem = f"synthetic_{i:04d}"
        jpg, xml = image_dir / f"{stem}.jpg", xml_dir / f"{stem}.xml"
        if not jpg.exists():
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
            write_bytes_atomic(jpg, buf.tobytes())
        if not xml.exists():
            write_text_atomic(xml, voc_xml_string(jpg.name, size, size, names, boxes))
    for folder, ext in ((image_dir, "jpg"), (xml_dir, "xml")):
        for p in folder.glob(f"synthetic_*.{ext}"):
            if (m := re.fullmatch(rf"synthetic_(\d{{4,}})\.{ext}", p.name)) and int(m.group(1)) >= num_images:
                p.unlink()
    return SyntheticDataset(image_dir, xml_dir, lm_path, num_images, counts)


def make_synthetic_video(path: Path | str, num_frames: int = 90, size: tuple[int, int] = (640, 360), fps: float = 30.0,
                         seed: int = 0, overwrite: bool = False) -> Path:
    """A short MP4 of drawn faces drifting across the frame (for the notebook's live-detection step without a camera)."""
    import cv2

    from mask_od.fileio import atomic_path

    w, h = size
    rng = np.random.default_rng(seed)
    faces = []
    for k in range(3):
        fw = int(rng.integers(h // 5, h // 3))
        faces.append({"kind": DEFAULT_CLASSES[k % 2], "w": fw, "h": int(fw * 1.25), "x": float(rng.integers(0, w - fw)),
                      "y": float(rng.integers(0, h - int(fw * 1.25))), "vx": float(rng.uniform(-3, 3)), "seed": int(rng.integers(1 << 30))})
    base = cv2.resize(_background(max(w, h), rng), (w, h))
    with atomic_path(path, overwrite) as tmp:
        tmp_mp4 = tmp.with_suffix(".mp4")
        writer = cv2.VideoWriter(str(tmp_mp4), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        try:
            for _ in range(num_frames):
                img = base.copy()
                for f in faces:
                    f["x"] = float(np.clip(f["x"] + f["vx"], 0, w - f["w"] - 1))
                    if f["x"] in (0, w - f["w"] - 1):
                        f["vx"] = -f["vx"]
                    x, y = int(f["x"]), int(f["y"])
                    _draw_face(img, (x, y, x + f["w"], y + f["h"]), f["kind"], np.random.default_rng(f["seed"]))
                writer.write(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        finally:
            writer.release()
        tmp_mp4.rename(tmp)
    return Path(path)
