"""VOC annotations -> sharded TFRecords with the TF OD API / Model Garden feature keys, written atomically."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from mask_od.annotations import Annotation, AnnotationError, decode_image_rgb, parse_voc_dir
from mask_od.boxes import voc_xyxy_to_norm_yxyx
from mask_od.fileio import refuse_existing, refuse_outputs_on_inputs, replace_path, temp_sibling
from mask_od.label_map import name_to_id, read_label_map, validate_names


@dataclasses.dataclass
class TFRecordResult:
    """What :func:`write_tfrecords` wrote."""

    paths: list[Path]
    num_images: int
    num_boxes: int
    boxes_per_class: dict[str, int]
    clipped_boxes: int
    reencoded_images: int  # PNG / 16-bit / RGBA images re-encoded as 8-bit RGB JPEG
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.num_images / self.seconds if self.seconds > 0 else float("inf")


def shard_paths(output_path: Path | str, num_shards: int) -> list[Path]:
    """``train.record`` for one shard, else ``train.record-00000-of-00004`` ... (the TF OD API naming)."""
    output_path = Path(output_path)
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    if num_shards == 1:
        return [output_path]
    return [output_path.with_name(f"{output_path.name}-{i:05d}-of-{num_shards:05d}") for i in range(num_shards)]


def _image_jpeg_bytes(ann: Annotation) -> tuple[bytes, bool]:
    """JPEG bytes of the image: the file itself when it is already an 8-bit RGB JPEG, else re-encoded."""
    import cv2

    data = ann.image_path.read_bytes()
    if data[:3] == b"\xff\xd8\xff":
        return data, False
    rgb = decode_image_rgb(data, ann.image_path)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise AnnotationError(f"{ann.image_path}: cannot re-encode as JPEG")
    return buf.tobytes(), True


def build_tf_example(ann: Annotation, encoded_jpeg: bytes, label_ids: Mapping[str, int]):
    """A ``tf.train.Example`` with the OD API keys; boxes are normalized, classes are label-map ids."""
    import tensorflow as tf

    def b(values):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))

    def f(values):
        return tf.train.Feature(float_list=tf.train.FloatList(value=values))

    def i(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

    yxyx = voc_xyxy_to_norm_yxyx(ann.boxes_xyxy, ann.width, ann.height)
    area = (ann.boxes_xyxy[:, 2] - ann.boxes_xyxy[:, 0]) * (ann.boxes_xyxy[:, 3] - ann.boxes_xyxy[:, 1])
    name = ann.image_path.name.encode()
    feature = {
        "image/encoded": b([encoded_jpeg]),
        "image/format": b([b"jpeg"]),
        "image/height": i([ann.height]),
        "image/width": i([ann.width]),
        "image/filename": b([name]),
        "image/source_id": b([name]),
        "image/object/bbox/ymin": f(yxyx[:, 0].tolist()),
        "image/object/bbox/xmin": f(yxyx[:, 1].tolist()),
        "image/object/bbox/ymax": f(yxyx[:, 2].tolist()),
        "image/object/bbox/xmax": f(yxyx[:, 3].tolist()),
        "image/object/class/text": b([n.encode() for n in ann.names]),
        "image/object/class/label": i([label_ids[n] for n in ann.names]),
        "image/object/difficult": i(ann.difficult),
        "image/object/is_crowd": i([0] * ann.num_boxes),
        "image/object/area": f(area.astype(np.float32).tolist()),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature))


def _inputs(annotations: Sequence[Annotation], label_map_path, *folders) -> list[tuple[str, Path]]:
    """What a records writer reads, for :func:`~mask_od.fileio.refuse_outputs_on_inputs`."""
    return ([("label map", label_map_path), *(("folder", f) for f in folders)]
            + [(k, p) for a in annotations for k, p in (("annotation", a.xml_path), ("image", a.image_path))])


def write_tfrecords(
    annotations: Sequence[Annotation],
    label_map: Mapping[int, str] | Path | str,
    output_path: Path | str,
    num_shards: int = 1,
    overwrite: bool = False,
    progress: bool = True,
) -> TFRecordResult:
    """Write ``annotations`` as TFRecord shards (round-robin). Each shard goes to a temporary name and is renamed only
    when every shard is complete, so a failure leaves no partial records. Class names are checked first, and that no
    record path is one of the inputs (label map, an XML or image file)."""
    import tensorflow as tf

    t0 = time.perf_counter()
    lm_path = label_map if isinstance(label_map, (str, Path)) else ""
    lm = read_label_map(label_map) if isinstance(label_map, (str, Path)) else dict(label_map)
    validate_names({a.xml_path: a.names for a in annotations}, lm, lm_path)
    ids = name_to_id(lm)
    paths = shard_paths(output_path, num_shards)
    refuse_outputs_on_inputs({f"records {p}": p for p in paths}, _inputs(annotations, lm_path))
    for p in paths:
        refuse_existing(p, overwrite, file=True)
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    tmps = [temp_sibling(p) for p in paths]
    writers = [tf.io.TFRecordWriter(str(t)) for t in tmps]
    per_class: dict[str, int] = {n: 0 for n in lm.values()}
    reencoded = clipped = 0
    it = annotations
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(annotations, desc=f"TFRecord {Path(output_path).name}", unit="img")
    try:
        for k, ann in enumerate(it):
            data, re = _image_jpeg_bytes(ann)
            reencoded += re
            clipped += ann.clipped
            for n in ann.names:
                per_class[n] += 1
            writers[k % num_shards].write(build_tf_example(ann, data, ids).SerializeToString(deterministic=True))
        for w in writers:
            w.close()
        for t, p in zip(tmps, paths):
            replace_path(t, p)
    finally:
        for w, t in zip(writers, tmps):
            w.close()
            if t.exists():
                t.unlink()
    return TFRecordResult(
        paths=paths,
        num_images=len(annotations),
        num_boxes=sum(per_class.values()),
        boxes_per_class=per_class,
        clipped_boxes=clipped,
        reencoded_images=reencoded,
        seconds=time.perf_counter() - t0,
    )


def convert_voc_dir(
    xml_dir: Path | str,
    label_map: Mapping[int, str] | Path | str,
    output_path: Path | str,
    image_dir: Path | str | None = None,
    num_shards: int = 1,
    csv_path: Path | str | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> TFRecordResult:
    """Parse a folder of VOC XML (all errors reported at once), optionally write the CSV, then write TFRecords."""
    anns = parse_voc_dir(xml_dir, image_dir, progress=progress)
    lm_path = label_map if isinstance(label_map, (str, Path)) else ""
    refuse_outputs_on_inputs({"records": output_path, "csv": csv_path}, _inputs(anns, lm_path, xml_dir, image_dir))
    if csv_path:
        from mask_od.annotations import write_csv

        write_csv(anns, csv_path, overwrite=overwrite)
    return write_tfrecords(anns, label_map, output_path, num_shards, overwrite=overwrite, progress=progress)


def count_records(paths: Sequence[Path | str]) -> int:
    """Number of examples in TFRecord files."""
    import tensorflow as tf

    return sum(1 for _ in tf.data.TFRecordDataset([str(p) for p in paths]))
