"""Take N pictures per label from a camera, video file or folder, one every K seconds (TF OD API tutorial step 1)."""

import argparse

from mask_od.runtime import quiet_tensorflow

quiet_tensorflow()  # TensorFlow's C++ logs quieted before it starts


def main(argv=None) -> int:
    from mask_od.cli import at_least, error_exit

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--labels", nargs="+", default=["with_mask", "without_mask"], help="one folder of pictures per label")
    p.add_argument("--num_images", type=at_least(1), default=5, help="pictures per label")
    p.add_argument("--interval_s", type=at_least(0.0, float), default=2.0, help="seconds between pictures (time to change pose)")
    p.add_argument("--source", default="0", help="camera index, video file, folder of images or stream URL")
    p.add_argument("--out_dir", default="workspace/images/collected")
    a = p.parse_args(argv)
    from mask_od.capture import capture_images
    from mask_od.errors import MaskODError

    try:
        r = capture_images(a.labels, a.num_images, a.interval_s, a.source, a.out_dir,
                           on_saved=lambda label, path: print(f"{label}: {path}", flush=True))
    except (MaskODError, OSError) as e:
        return error_exit(e)
    print(r.message)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
