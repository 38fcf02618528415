"""Packaged detector models (the face-mask model shipped in ``models/face_mask``, or one made with
``scripts/package_model.py``): where they are, their ``manifest.json``, and the sha256 check that refuses a damaged file.

A packaged model folder holds ``checkpoint/model.*`` (model variables only; float16 since issue 24, float32 in older
packages: :func:`mask_od.runs.restore_weights` reads both), ``label_map.pbtxt``, ``config.yaml`` (the run that made it),
``model_float32.tflite`` / ``model_int8.tflite``, ``README.md`` (its model card) and ``manifest.json``:
``{"files": {relative path: sha256}, "backbone", "anchor_size", "tflite_files", "tflite_runs" (size -> the run its
TFLite files come from, its steps and minutes; absent in older packages), ...}``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from mask_od.errors import MaskODError

# the repository's models/ folder, or the copy inside the installed package (pip install . / a wheel: mask_od/models)
MODELS_DIR = next((p for p in (Path(__file__).resolve().parent / "models", Path(__file__).resolve().parents[1] / "models")
                   if (p / "face_mask").is_dir()), Path(__file__).resolve().parents[1] / "models")
SHIPPED = ("face_mask",)  # names that `pretrained:` accepts for a folder of MODELS_DIR
MANIFEST = "manifest.json"
CHECKPOINT = "checkpoint/model"  # prefix inside the folder


class ShippedModelError(MaskODError, RuntimeError):
    """A packaged model is missing, damaged (sha256 differs) or does not fit what it is used for."""


def sha256_file(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def is_packaged(name_or_path: str | Path) -> bool:
    """``face_mask`` or a folder holding ``manifest.json`` (a detector, not a backbone ``.h5`` file)."""
    s = str(name_or_path)
    return s in SHIPPED or (Path(s).expanduser() / MANIFEST).is_file()


def model_dir(name_or_path: str | Path) -> Path:
    """The folder of a shipped name (``face_mask`` -> ``models/face_mask``) or the folder given."""
    s = str(name_or_path)
    p = MODELS_DIR / s if s in SHIPPED else Path(s).expanduser()
    if not (p / MANIFEST).is_file():
        raise ShippedModelError(f"{p}: no {MANIFEST} here: not a packaged model"
                                + (" (the shipped model is missing from this copy of the repository)" if s in SHIPPED else ""))
    return p


def tflite_name(size: int, variant: str, first_size: int = 320) -> str:
    """File name of a packaged TFLite file: ``model_{variant}.tflite`` at the folder's first size (320 for the shipped
    model, the name every export uses), ``model_{size}_{variant}.tflite`` at other sizes."""
    return f"model_{variant}.tflite" if size == first_size else f"model_{size}_{variant}.tflite"


def shipped_tflite(size: int = 320, variant: str = "int8", name: str = "face_mask") -> Path:
    """A TFLite file of a packaged model: ``size`` its input size in px, ``variant`` ``int8`` or ``float32``.
    Raises :class:`ShippedModelError` naming the sizes and variants it has when this one is not there."""
    folder = model_dir(name)
    manifest = read_manifest(folder)
    files = manifest.get("tflite_files") or {str(manifest.get("tflite_image_size", 320)):
                                             {"float32": "model_float32.tflite", "int8": "model_int8.tflite"}}
    rel = files.get(str(size), {}).get(variant)
    if rel is None:
        have = ", ".join(f"{s} ({'/'.join(v)})" for s, v in files.items())
        raise ShippedModelError(f"{folder}: no {variant} TFLite file at {size} px; it has {have}")
    return folder / rel


def default_live_model(size: int = 320) -> Path:
    """The shipped model's TFLite file for live detection at ``size`` px (int8: the fastest, within a point of float32).
    320 suits webcam close-ups; 640 finds small faces (door, street and crowd cameras) at about 4x the time."""
    return shipped_tflite(size, "int8")


def live_model(model: Path | str | None, size: int | None) -> tuple[Path | str, str | None]:
    """What ``detect_live.py`` and ``serve.py`` run: ``model`` as given, or the shipped int8 file at ``size`` px (320
    when None) with the line that says so. Raises :class:`ShippedModelError` when both are given: ``--size`` picks a
    file of the shipped model, and an export keeps the size it was exported at."""
    if model is not None:
        if size is not None:
            raise ShippedModelError(f"--size {size} picks a file of the shipped model; {model} runs at the size it was "
                                    "exported at: drop --size")
        return model, None
    size = size or 320
    path = default_live_model(size)
    return path, f"model: {path} (the shipped face-mask model at {size} px; --size 320 or 640; --model to use yours)"


ZOO_ASPECT_RATIOS = "0.5,1.0,2.0"  # every package made before the key existed was trained with these


def manifest_anchors(manifest: dict) -> dict:
    """The anchor keys of a manifest as config values: ``{"anchor_size", "anchor_aspect_ratios"}`` (packages made
    before ``anchor_aspect_ratios`` existed used the zoo's 0.5,1.0,2.0)."""
    return {"anchor_size": manifest["anchor_size"],
            "anchor_aspect_ratios": manifest.get("anchor_aspect_ratios", ZOO_ASPECT_RATIOS)}


def read_manifest(folder: Path | str) -> dict:
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ShippedModelError(f"{path}: unreadable manifest ({e})") from None
    for key in ("files", "backbone", "anchor_size"):
        if key not in manifest:
            raise ShippedModelError(f"{path}: manifest lacks {key!r}")
    return manifest


def verify(folder: Path | str, only: list[str] | None = None) -> dict:
    """Check the sha256 of every file the manifest lists (or of those in ``only``, relative paths) and return the
    manifest. A missing or changed file raises :class:`ShippedModelError` naming it: a damaged download or a partial
    copy is refused instead of giving silently wrong detections."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    for rel, want in manifest["files"].items():
        if only is not None and rel not in only:
            continue
        p = folder / rel
        if not p.is_file():
            raise ShippedModelError(f"{p}: missing (listed in {folder / MANIFEST})")
        got = sha256_file(p)
        if got != want:
            raise ShippedModelError(f"{p}: damaged: sha256 {got[:12]}… differs from {want[:12]}… in {folder / MANIFEST}; "
                                    "restore it (git checkout / download again) instead of using it")
    return manifest


def verify_model_file(path: Path | str) -> None:
    """When ``path`` (a ``.tflite`` file) lies in a packaged model folder, check its sha256 and that of the folder's
    ``label_map.pbtxt`` (where the class names are read from); other files pass."""
    p = Path(path)
    if (p.parent / MANIFEST).is_file():
        files = read_manifest(p.parent)["files"]
        if p.name not in files:
            return
        verify(p.parent, only=[p.name] + [n for n in ("label_map.pbtxt",) if n in files])


def checkpoint_files(folder: Path | str) -> list[str]:
    """The manifest entries of the checkpoint (index and data shards)."""
    return [k for k in read_manifest(folder)["files"] if k.startswith(CHECKPOINT + ".")]


def write_manifest(folder: Path | str, info: dict) -> dict:
    """Hash every file of ``folder`` (but the manifest and the card, which lists the sums) into ``manifest.json``."""
    from mask_od.fileio import write_text_atomic

    folder = Path(folder)
    paths = [p for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in (MANIFEST, "README.md")]
    files = {p.relative_to(folder).as_posix(): sha256_file(p) for p in paths}
    manifest = {**info, "files": files, "sizes": {p.relative_to(folder).as_posix(): p.stat().st_size for p in paths}}
    write_text_atomic(folder / MANIFEST, json.dumps(manifest, indent=1) + "\n", overwrite=True)
    return manifest
