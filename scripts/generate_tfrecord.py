"""LabelImg VOC XML folder -> TFRecord (TF OD API feature keys). Flags follow the tutorial's generate_tfrecord.py:
-x XML_DIR -l LABELS_PATH -o OUTPUT_PATH [-i IMAGE_DIR] [-c CSV_PATH]."""

import argparse
from pathlib import Path

from mask_od.runtime import quiet_tensorflow

quiet_tensorflow()  # TensorFlow's C++ logs quieted before it starts


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("-x", "--xml_dir", required=True)
    p.add_argument("-l", "--labels_path", required=True, help="label_map.pbtxt (written from the XML's classes when missing)")
    p.add_argument("-o", "--output_path", required=True, help="e.g. workspace/annotations/train.record")
    p.add_argument("-i", "--image_dir", default=None, help="default: beside the XML files")
    p.add_argument("-c", "--csv_path", default=None, help="also write the xml_to_csv table here")
    p.add_argument("--num_shards", type=int, default=1)
    p.add_argument("--overwrite", action="store_true", help="replace existing record files")
    a = p.parse_args(argv)
    if a.num_shards < 1:
        p.error(f"--num_shards must be >= 1, got {a.num_shards}")
    from mask_od.cli import error_exit
    from mask_od.errors import MaskODError
    from mask_od.tfrecord import convert_voc_dir

    try:
        if not Path(a.labels_path).exists():  # the tutorial writes it by hand; here the first call makes it
            from mask_od.annotations import parse_voc_dir
            from mask_od.label_map import write_label_map
            from mask_od.report import dataset_report

            names = list(dataset_report(parse_voc_dir(a.xml_dir, a.image_dir, progress=False))["boxes_per_class"])
            write_label_map(dict(enumerate(names, start=1)), a.labels_path)
            print(f"wrote the label map {a.labels_path}: " + ", ".join(f"{i} {n}" for i, n in enumerate(names, 1))
                  + " (classes by number of boxes); give the same file to every later step (test records, training)")
        r = convert_voc_dir(a.xml_dir, a.labels_path, a.output_path, a.image_dir, a.num_shards, a.csv_path, a.overwrite)
    except (MaskODError, FileExistsError, FileNotFoundError) as e:
        return error_exit(e)
    print(f"wrote {r.num_images} images, {r.num_boxes} boxes {r.boxes_per_class} to {', '.join(map(str, r.paths))} "
          f"({r.images_per_second:.0f} images/s; {r.clipped_boxes} boxes clipped at the edge, {r.reencoded_images} images re-encoded)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
