"""Shared by the benchmarks: TensorFlow's C++ logs quieted, ../shared location, a results folder (git-ignored)."""

from pathlib import Path

from mask_od.runtime import quiet_tensorflow

quiet_tensorflow()
ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
FACE_MASK = SHARED / "data" / "face-mask"
VIDEO = SHARED / "data" / "video" / "street-masks.mp4"
WEIGHTS = SHARED / "weights" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
RESULTS = ROOT / "benchmarks" / "results"


def need(path: Path) -> Path:
    if not path.exists():
        raise SystemExit(f"{path} is absent: this benchmark needs ../shared")
    return path
