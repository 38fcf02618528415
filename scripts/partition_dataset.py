"""Split images (and their XML with -x) into train/ and test/ folders, seeded and stratified by class; copies only.

Flags follow the TF OD API tutorial's partition_dataset.py: -i IMAGE_DIR [-o OUT_DIR] [-r RATIO] [-x]."""

import argparse
from pathlib import Path

from mask_od.runtime import quiet_tensorflow

quiet_tensorflow()  # TensorFlow's C++ logs quieted before it starts


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("-i", "--imageDir", required=True, help="folder with images and their LabelImg .xml files")
    p.add_argument("-o", "--outputDir", default=None, help="where train/ and test/ go (default: the image folder)")
    p.add_argument("-r", "--ratio", type=float, default=0.1, help="share of images for test")
    p.add_argument("-x", "--xml", action="store_true", help="copy the .xml files too (always done; kept for the tutorial's flag)")
    p.add_argument("--xml_dir", default=None, help="annotation folder if not beside the images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true",
                   help="first remove the files an earlier split of mask_od wrote to train/ and test/ (never other files)")
    a = p.parse_args(argv)
    if not 0 < a.ratio < 1:
        p.error(f"-r/--ratio must lie between 0 and 1 (the share of images for test), got {a.ratio:g}")
    from mask_od.annotations import parse_voc_dir
    from mask_od.cli import error_exit
    from mask_od.errors import MaskODError
    from mask_od.split import split_annotations, write_split

    try:
        out_dir = Path(a.outputDir or a.imageDir)  # its train/ test/ val/ hold an earlier split's copies, not sources
        anns = parse_voc_dir(a.xml_dir or a.imageDir, a.imageDir, exclude=[out_dir / d for d in ("train", "test", "val")])
        sp = split_annotations(anns, a.ratio, seed=a.seed)
        out = write_split(sp, a.outputDir or a.imageDir, overwrite=a.overwrite)
    except (MaskODError, ValueError, OSError) as e:
        return error_exit(e)
    print(f"train {len(sp.train)} images -> {out['train_dir']}\ntest {len(sp.test)} images -> {out['test_dir']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
