"""TFRecord conversion throughput (images/s) on ../shared/data/face-mask: parse + validate, then write."""

import shutil
import tempfile
import time

from _common import FACE_MASK, need


def main() -> None:
    import tensorflow  # noqa: F401 - imported before timing: its start-up is not conversion work

    from mask_od.annotations import parse_voc_dir
    from mask_od.label_map import DEFAULT_CLASSES
    from mask_od.tfrecord import count_records, write_tfrecords

    need(FACE_MASK)
    tmp = tempfile.mkdtemp()
    try:
        t0 = time.perf_counter()
        anns = parse_voc_dir(FACE_MASK / "annotations", FACE_MASK / "images")
        t1 = time.perf_counter()
        res = write_tfrecords(anns, dict(enumerate(DEFAULT_CLASSES, 1)), f"{tmp}/all.record", num_shards=2, progress=False)
        t2 = time.perf_counter()
        assert count_records(res.paths) == len(anns)
        n = len(anns)
        print(f"{n} images, {res.num_boxes} boxes: parse+validate {t1 - t0:.2f} s ({n / (t1 - t0):.0f} img/s), "
              f"write {t2 - t1:.2f} s ({n / (t2 - t1):.0f} img/s), end to end {n / (t2 - t0):.0f} img/s")
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
