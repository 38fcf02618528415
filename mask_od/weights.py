"""Pretrained backbone weights: the ImageNet files of Keras applications, downloaded once into a cache (checked with
a sha256 sidecar) or taken from a local file (no internet)."""

from __future__ import annotations

import hashlib
import urllib.request
from pathlib import Path

from mask_od.errors import MaskODError

WEIGHT_URLS = {
    "mobilenet_v2_fpnlite": "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"
    "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
    "resnet50_fpn": "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
    "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
}


class WeightsError(MaskODError, RuntimeError):
    """Pretrained weights could not be found, downloaded or loaded."""


def cache_dir() -> Path:
    return Path.home() / ".cache" / "mask_od" / "weights"


def resolve_pretrained(pretrained: str, backbone: str, sha256: str | None = None) -> Path | None:
    """``none`` -> None; a file path -> that path; ``imagenet`` -> the cached download (fetched once, checked, renamed
    into place). Raises :class:`WeightsError` with what to do when the download fails (no internet: pass a file)."""
    if pretrained.lower() in ("", "none", "null"):
        return None
    if pretrained != "imagenet":
        p = Path(pretrained).expanduser()
        if not p.is_file():
            raise WeightsError(f"{p}: pretrained weights file not found")
        return p
    url = WEIGHT_URLS[backbone]
    target = cache_dir() / url.rsplit("/", 1)[1]
    sidecar = target.with_name(target.name + ".sha256")
    if target.is_file():
        if sidecar.is_file():  # checksum recorded at download: a damaged cache is refused, not half-loaded
            got = hashlib.sha256(target.read_bytes()).hexdigest()
            if got != sidecar.read_text().split()[0]:
                raise WeightsError(f"{target}: cached weights do not match their recorded sha256; delete the file to fetch it again")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    try:
        digest = hashlib.sha256()
        with urllib.request.urlopen(url, timeout=30) as r, open(tmp, "wb") as f:
            while chunk := r.read(1 << 20):
                digest.update(chunk)
                f.write(chunk)
        if sha256 and digest.hexdigest() != sha256:
            raise WeightsError(f"{url}: checksum mismatch (got {digest.hexdigest()}, expected {sha256})")
        sidecar.write_text(f"{digest.hexdigest()}  {target.name}\n")
        tmp.replace(target)
    except (OSError, WeightsError) as e:
        tmp.unlink(missing_ok=True)
        raise WeightsError(
            f"could not download ImageNet weights for {backbone} from {url} ({e}). Without internet, download the "
            f"file elsewhere and set pretrained=/path/to/{target.name} (or put it at {target})."
        ) from None
    return target
