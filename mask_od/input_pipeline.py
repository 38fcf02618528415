"""tf.data input pipelines over TFRecords: Model Garden's TfExampleDecoder and RetinaNet parser (anchor labeling)."""

from __future__ import annotations

import glob
import re
from pathlib import Path

from mask_od.config import Config
from mask_od.errors import MaskODError
from mask_od.model import AnchorSpec


class RecordsError(MaskODError, ValueError):
    """A records file that holds no example or cannot be read as TFRecords; the message names it."""


def resolve_records(pattern: str | Path | list) -> list[str]:
    """Files matching a TFRecord path, glob or list (shards ``name-00000-of-00004`` found from ``name``)."""
    if isinstance(pattern, (list, tuple)):
        return sorted(f for p in pattern for f in resolve_records(p))
    p = str(pattern)
    files = sorted(glob.glob(p)) or sorted(glob.glob(p + "-?????-of-?????"))
    if not files:
        raise FileNotFoundError(f"{p}: no TFRecord files match (make them with scripts/generate_tfrecord.py)")
    return files


def require_examples(records: str | Path | list) -> list[str]:
    """The files of ``records`` (:func:`resolve_records`), each checked to hold at least one record: a
    :class:`RecordsError` naming the file when it holds none (an empty file, a few bytes of text) or its first record
    cannot be read (not a TFRecord file: a label map, a CSV, an image), or a later one cannot (a file cut short: it
    would end training, evaluation or an export's check in a traceback). Reads every record once (no decoding)."""
    import tensorflow as tf

    files = resolve_records(records)
    for f in files:
        if Path(f).is_dir():
            raise RecordsError(f"{f}: a folder, not a TFRecord file: give the records file (or a glob of them)")
        count = 0
        try:
            for _ in tf.data.TFRecordDataset(f, buffer_size=1 << 22):
                count += 1
        except tf.errors.DataLossError:
            if not count:
                raise RecordsError(f"{f}: not a TFRecord file (its first record cannot be read; a damaged TFRecord file "
                                   "reads so too): make records with scripts/generate_tfrecord.py") from None
            raise RecordsError(f"{f}: damaged after its first {count:,} record(s) (cut short, or changed): make the "
                               "records again with scripts/generate_tfrecord.py") from None
        except tf.errors.OpError as e:
            why = re.sub(r"\{\{function_node [^}]*\}\}\s*|\s*\[Op:.*", "", (e.message.splitlines() or [""])[0])
            raise RecordsError(f"{f}: cannot be read as TFRecords ({why[:160]})") from None
        if not count:
            raise RecordsError(f"{f}: no examples in it (an empty file, or not a TFRecord file): make records with "
                               "scripts/generate_tfrecord.py")
    return files


def _color_jitter(data: dict, seed: int) -> dict:
    import tensorflow as tf

    img = tf.image.convert_image_dtype(data["image"], tf.float32)
    img = tf.image.random_brightness(img, 0.15)
    img = tf.image.random_contrast(img, 0.8, 1.2)
    img = tf.image.random_saturation(img, 0.7, 1.3)
    img = tf.image.random_hue(img, 0.03)
    data = dict(data)
    data["image"] = tf.image.convert_image_dtype(tf.clip_by_value(img, 0.0, 1.0), tf.uint8)
    return data


def build_parser(config: Config, training: bool, anchors: AnchorSpec | None = None):
    from official.vision.configs import common
    from official.vision.dataloaders.retinanet_input import Parser

    crop = None
    if training and config.aug_ssd_random_crop:
        crop = common.Augmentation(type="ssd_random_crop", ssd_random_crop=common.SSDRandomCrop())
    return Parser(
        output_size=[config.image_size, config.image_size],
        **(anchors or AnchorSpec.from_config(config)).kwargs(),
        aug_type=crop,
        aug_rand_hflip=config.aug_hflip and training,
        aug_scale_min=config.aug_scale_min if training else 1.0,
        aug_scale_max=config.aug_scale_max if training else 1.0,
        max_num_instances=config.max_boxes,
        dtype="float32",
        pad=False,
    )


def record_classes(records) -> list[list[int]]:
    """The label-map ids of each example's boxes, in the order ``TFRecordDataset(files)`` reads them."""
    import tensorflow as tf

    spec = {"image/object/class/label": tf.io.VarLenFeature(tf.int64)}
    out = []
    for raw in tf.data.TFRecordDataset(resolve_records(records)).batch(256):
        labels = tf.io.parse_example(raw, spec)["image/object/class/label"]
        out.extend([int(c) for c in row] for row in tf.RaggedTensor.from_sparse(labels).to_list())
    return out


def check_record_labels(records, label_map: dict[int, str], label_map_name: str = "the label map",
                        max_records: int = 256) -> int:
    """Compare the class ids of ``records`` with the class text each box carries (``image/object/class/text``, as
    generate_tfrecord writes it) against ``label_map`` ``{id: name}``; reads records until every label-map id was seen
    or ``max_records`` per file. Raises :class:`~mask_od.label_map.LabelMapError` naming the records file and
    ``label_map_name`` when an id means another name there, or is not in the label map (records written with another
    label map: every metric and every trained class would be wrong); a :class:`RecordsError` naming the file when one
    holds no example or is not a TFRecord file (:func:`require_examples`). Boxes without class text are checked for
    ids only, and one printed line per file says how many. Returns how many boxes were checked."""
    import tensorflow as tf

    from mask_od.label_map import LabelMapError

    spec = {"image/object/class/label": tf.io.VarLenFeature(tf.int64),
            "image/object/class/text": tf.io.VarLenFeature(tf.string)}
    checked = 0
    for f in require_examples(records):
        wrong: dict[tuple[int, str], int] = {}
        seen: set[int] = set()
        without_text = 0
        for raw in tf.data.TFRecordDataset(f).take(max_records).batch(64):
            ex = tf.io.parse_example(raw, spec)
            ids = tf.sparse.to_dense(ex["image/object/class/label"]).numpy()
            texts = tf.sparse.to_dense(ex["image/object/class/text"], default_value=b"").numpy()
            n = ex["image/object/class/label"].indices.numpy()
            for r, c in n:
                cid = int(ids[r, c])
                text = texts[r, c].decode("utf-8", "replace") if c < texts.shape[1] else ""
                checked += 1
                without_text += not text
                seen.add(cid)
                if label_map.get(cid) is None or (text and text != label_map[cid]):
                    wrong[(cid, text)] = wrong.get((cid, text), 0) + 1
            if wrong or seen >= set(label_map):
                break
        if wrong:
            def says(cid: int) -> str:
                name = label_map.get(cid)
                return f"{cid} is {name!r}" if name else f"{cid} is not there"

            shown = "; ".join(f"id {cid} is {text!r} in the records ({k} box(es)) but in {label_map_name} {says(cid)}"
                              if text else f"id {cid} ({k} box(es)) is not in {label_map_name}"
                              for (cid, text), k in sorted(wrong.items()))
            raise LabelMapError(f"{f}: written with another label map than {label_map_name} ({shown}; it has "
                                f"{', '.join(f'{i}: {n}' for i, n in label_map.items())}): regenerate the records with "
                                "this label map (scripts/generate_tfrecord.py -l), or use the one they were written with")
        if without_text:
            print(f"{f}: {without_text} box(es) carry no class text (image/object/class/text): their ids were checked "
                  f"against {label_map_name}, their names could not be", flush=True)
    return checked


def repeat_factors(classes_per_image: list[list[int]], threshold: float) -> tuple[list[float], dict[int, float]]:
    """Repeat-factor sampling (LVIS, Gupta et al. 2019): a class in a share ``f_c`` of the images gets
    ``r_c = max(1, sqrt(threshold / f_c))``; an image repeats ``max r_c`` over its classes (1 without boxes).
    Returns (factor per image, factor per class)."""
    n = max(1, len(classes_per_image))
    share: dict[int, float] = {}
    for labels in classes_per_image:
        for c in set(labels):
            share[c] = share.get(c, 0.0) + 1.0 / n
    per_class = {c: max(1.0, (threshold / f) ** 0.5) for c, f in sorted(share.items())}
    per_image = [max((per_class[c] for c in set(labels)), default=1.0) for labels in classes_per_image]
    return per_image, per_class


def oversample(ds, factors: list[float], seed: int):
    """Endless shuffled ``ds`` in which element ``i`` comes ``factors[i]`` times per epoch on average (the fraction
    rounded at random each epoch); copies are shuffled apart."""
    import tensorflow as tf

    ds = tf.data.Dataset.zip((ds, tf.data.Dataset.from_tensor_slices(tf.constant(factors, tf.float32))))
    ds = ds.shuffle(2048, seed=seed, reshuffle_each_iteration=True).repeat()

    def copies(element, factor):
        whole = tf.floor(factor)
        n = whole + tf.cast(tf.random.uniform([], seed=seed) < factor - whole, tf.float32)
        return tf.data.Dataset.from_tensors(element).repeat(tf.cast(n, tf.int64))

    return ds.flat_map(copies).shuffle(256, seed=seed + 1)


def build_train_dataset(config: Config, records=None, batch_size: int | None = None, anchors: AnchorSpec | None = None):
    """Endless, shuffled, augmented batches of (normalized image ``[B, S, S, 3]``, RetinaNet labels). With
    ``repeat_threshold`` > 0, images of rare classes come back more often (:func:`repeat_factors`, rounded at random
    each epoch so the expected count is the factor)."""
    import tensorflow as tf
    from official.vision.dataloaders.tf_example_decoder import TfExampleDecoder

    files = resolve_records(records or config.train_records)
    decoder = TfExampleDecoder()
    parser = build_parser(config, training=True, anchors=anchors)
    ds = tf.data.TFRecordDataset(files).cache()
    if config.repeat_threshold > 0:
        factors, per_class = repeat_factors(record_classes(files), config.repeat_threshold)
        print(f"repeat factors per class id: { {c: round(r, 2) for c, r in per_class.items()} }; an epoch is "
              f"{sum(factors):.0f} images instead of {len(factors)}")
        ds = oversample(ds, factors, config.seed)
    else:
        ds = ds.shuffle(2048, seed=config.seed, reshuffle_each_iteration=True).repeat()
    ds = ds.map(decoder.decode, num_parallel_calls=tf.data.AUTOTUNE)
    if config.aug_color:
        ds = ds.map(lambda d: _color_jitter(d, config.seed), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.map(parser.parse_fn(is_training=True), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size or config.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def iter_decoded(records):
    """Decoded examples (uint8 image, normalized yxyx ``groundtruth_boxes``, label-map ``groundtruth_classes``...)."""
    import tensorflow as tf
    from official.vision.dataloaders.tf_example_decoder import TfExampleDecoder

    return tf.data.TFRecordDataset(resolve_records(records)).map(TfExampleDecoder().decode)
