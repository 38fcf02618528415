"""Shared by the benchmarks: repo on the path, ../shared location, a results folder (git-ignored)."""

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"
FACE_MASK = SHARED / "data" / "face-mask"
VIDEO = SHARED / "data" / "video" / "street-masks.mp4"
WEIGHTS = SHARED / "weights" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
RESULTS = ROOT / "benchmarks" / "results"


def need(path: Path) -> Path:
    if not path.exists():
        raise SystemExit(f"{path} is absent: this benchmark needs ../shared")
    return path
