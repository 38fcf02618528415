"""Write TFLite Metadata (labels, input normalization, output groups) into the TFLite files of an export or packaged
model folder, so MediaPipe Tasks' ObjectDetector runs them unchanged. The writer runs in MediaPipe's own tool venv
(mediapipe 0.10.21 pins numpy < 2 and protobuf < 5: never in the project's venv); --build makes it (~100 s, ~1 GB,
once; exports then write metadata themselves).
python scripts/write_metadata.py [workspace/exported-models/RUN] [--build]   (or: mask-od metadata ...)"""

import argparse
import json

from mask_od.runtime import quiet_tensorflow

quiet_tensorflow()  # TensorFlow's C++ logs quieted before it starts


def main(argv=None) -> int:
    from mask_od.metadata import TOOL_ENV

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("folder", nargs="?", default=None, help="export or packaged model folder (none: only --build)")
    p.add_argument("--build", action="store_true", help="build the MediaPipe tool venv when missing")
    p.add_argument("--tool_env", default=str(TOOL_ENV), help="where the tool venv lives")
    a = p.parse_args(argv)
    from mask_od.cli import error_exit
    from mask_od.errors import MaskODError
    from mask_od.metadata import build_tool_env
    from mask_od.package import add_metadata

    if a.folder is None and not a.build:
        p.error("pass an export folder, or --build to make the tool venv")
    try:
        if a.folder is None:
            print(json.dumps(build_tool_env(a.tool_env), indent=1))
        else:
            print(json.dumps(add_metadata(a.folder, a.tool_env, build=a.build), indent=1))
    except (MaskODError, OSError) as e:
        return error_exit(e)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
