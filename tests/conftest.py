"""Shared fixtures: tiny generated VOC datasets, and the ../shared data (skipped with a reason when absent)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
WEIGHTS = SHARED / "weights" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"


def need_shared(*parts: str) -> Path:
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} is absent: ../shared (project data) is only on the developers' and CI machines")
    return p


@pytest.fixture
def shared_face_mask() -> Path:
    return need_shared("data", "face-mask")


@pytest.fixture
def shared_weights() -> Path:
    return need_shared("weights", WEIGHTS.name)


@pytest.fixture
def tiny_voc(tmp_path: Path):
    """A 12-image generated VOC dataset (JPEG + XML + label map) in tmp_path/data."""
    from mask_od.synthetic import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path / "data", num_images=12, size=128, seed=1)


def tree_digest(folder: Path) -> dict[str, str]:
    """sha256 of every file below a folder (to prove nothing was changed)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def write_jpeg(path: Path, h: int = 60, w: int = 80) -> Path:
    import cv2

    img = (np.random.default_rng(0).random((h, w, 3)) * 255).astype(np.uint8)
    cv2.imwrite(str(path), img)
    return path


def write_xml(path: Path, filename: str, w: int, h: int, objects: list[tuple[str, float, float, float, float]], extra: str = "", header: str = "") -> Path:
    objs = "".join(
        f"<object><name>{n}</name><difficult>0</difficult><bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>"
        for n, a, b, c, d in objects
    )
    path.write_text(f"{header}<annotation><folder>images</folder><filename>{filename}</filename>{extra}"
                    f"<size><width>{w}</width><height>{h}</height><depth>3</depth></size>{objs}</annotation>")
    return path
