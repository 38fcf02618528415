"""TFLite Metadata (labels, input normalization, output groups) in exported files, so MediaPipe Tasks' ObjectDetector
and other metadata readers run them unchanged: written by MediaPipe's metadata writer in a tool venv of its own.

Why a venv of its own: the writer works in mediapipe 0.10.21 only (every newer wheel lacks a module it imports), and
mediapipe pins numpy < 2, protobuf < 5 and opencv-contrib, none of which may enter the project's environment. The
venv is built on request (:func:`build_tool_env`: ``python scripts/write_metadata.py --build``, ~100 s and ~1 GB) and then used by
every export; ``mask_od/mediapipe_tool.py`` runs inside it as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from mask_od.errors import MaskODError
from mask_od.fileio import remove_path, replace_path, temp_sibling

MEDIAPIPE = "mediapipe==0.10.21"  # the last wheel whose metadata_writers import
TOOL_ENV = Path.home() / ".cache" / "mask_od" / "tools" / "mediapipe-0.10.21"
TOOL = Path(__file__).with_name("mediapipe_tool.py")
READY = ".installed"  # written last: a venv without it is incomplete
BUILD_TIMEOUT = 900  # seconds for venv + pip install


class MetadataError(MaskODError, RuntimeError):
    """The MediaPipe tool venv cannot be built or used, or a file cannot take metadata; the message says why."""


def tool_python(env: Path | str = TOOL_ENV) -> Path | None:
    """The Python of a complete tool venv at ``env``, or None when it has not been built."""
    py = Path(env).expanduser() / "bin" / "python"
    return py if (Path(env).expanduser() / READY).is_file() and py.exists() else None


def build_tool_env(env: Path | str = TOOL_ENV, python: str | None = None, timeout: float = BUILD_TIMEOUT) -> dict:
    """Build the tool venv at ``env`` (``python -m venv``, then ``pip install mediapipe==0.10.21`` from the package
    index) unless it is complete already. Returns ``{"env", "python", "seconds", "megabytes", "built"}``; raises
    :class:`MetadataError` with pip's last lines (the half-built folder is removed) on failure or after ``timeout``."""
    env = Path(env).expanduser()
    if tool_python(env):
        return {"env": str(env), "python": str(tool_python(env)), "seconds": 0.0, "megabytes": _megabytes(env), "built": False}
    remove_path(env)
    env.parent.mkdir(parents=True, exist_ok=True)
    print(f"building the MediaPipe tool venv at {env} (pip install {MEDIAPIPE}: ~100 s, ~1 GB) ...", flush=True)
    t0 = time.perf_counter()
    py = env / "bin" / "python"
    try:
        for cmd in ([python or sys.executable, "-m", "venv", str(env)],
                    [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", MEDIAPIPE]):
            left = timeout - (time.perf_counter() - t0)
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=max(left, 1))
            if r.returncode:
                tail = [l for l in (r.stderr + r.stdout).splitlines() if l.strip() and "is ignored" not in l][-5:]
                raise MetadataError(f"{env}: `{' '.join(cmd[-3:])}` failed (exit {r.returncode}): "
                                    + (" | ".join(tail) or "no output"))
        (env / READY).write_text(MEDIAPIPE + "\n")
    except subprocess.TimeoutExpired:
        remove_path(env)
        raise MetadataError(f"{env}: building the MediaPipe tool venv took over {timeout:.0f} s; gave up") from None
    except BaseException:
        remove_path(env)
        raise
    info = {"env": str(env), "python": str(py), "seconds": round(time.perf_counter() - t0, 1),
            "megabytes": _megabytes(env), "built": True}
    print(f"MediaPipe tool venv built in {info['seconds']:.0f} s, {info['megabytes']} MB", flush=True)
    return info


def _megabytes(folder: Path) -> int:
    return round(sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink()) / 2**20)


def labels_in_class_order(label_map: Mapping[int, str]) -> list[str]:
    """The names of label-map ids 1..N in order: the TFLite files' classes are 0-based without background (class
    ``k`` is id ``k + 1``). Raises :class:`MetadataError` when the ids are not 1..N."""
    ids = sorted(label_map)
    if ids != list(range(1, len(ids) + 1)):
        raise MetadataError(f"label map ids {ids} are not 1..{len(ids)}: the TFLite classes (id - 1) would get wrong names")
    return [label_map[i] for i in ids]


def input_normalization(path: Path | str) -> tuple[list[float], list[float]]:
    """(mean, std) of the metadata's input normalization: the float files take float32 pixels 0..255 (letterboxed,
    padded with the ImageNet mean colour: :func:`mask_od.detect.letterbox_rgb`), the int8 files uint8 pixels as they
    are, so mean 0 and std 1 for both. Raises :class:`MetadataError` for a file with another input (an integer input
    quantized other than scale 1, zero point 0, or not one ``[1, S, S, 3]`` image)."""
    from ai_edge_litert.interpreter import Interpreter

    inputs = Interpreter(model_path=str(path)).get_input_details()
    if len(inputs) != 1 or len(inputs[0]["shape"]) != 4 or inputs[0]["shape"][-1] != 3:
        raise MetadataError(f"{path}: expected one [1, S, S, 3] image input, got {[list(i['shape']) for i in inputs]}")
    inp = inputs[0]
    if inp["dtype"] != np.float32 and tuple(inp["quantization"]) != (1.0, 0):
        raise MetadataError(f"{path}: {np.dtype(inp['dtype']).name} input quantized as {inp['quantization']}, not "
                            "pixels as they are (scale 1, zero point 0)")
    return [0.0], [1.0]


def _run_tool(python: Path, args: Sequence[str], stdin: str | None, timeout: float) -> dict:
    try:
        # the tool venv's own matplotlib (imported by mediapipe) must not get a Jupyter kernel's inline backend
        env = {k: v for k, v in os.environ.items() if k not in ("MPLBACKEND", "PYTHONPATH")} | {"MPLBACKEND": "Agg"}
        r = subprocess.run([str(python), str(TOOL), *args], input=stdin, capture_output=True, text=True, timeout=timeout,
                           env=env)
    except subprocess.TimeoutExpired:
        raise MetadataError(f"{TOOL.name} {args[0]} took over {timeout:.0f} s") from None
    lines = r.stdout.strip().splitlines()
    if r.returncode or not lines:
        tail = (r.stderr.strip().splitlines() or ["no output"])[-1]
        raise MetadataError(f"{TOOL.name} {args[0]} in {python}: exit {r.returncode}: {tail}")
    return json.loads(lines[-1])


def write_metadata(paths: Sequence[Path | str], label_map: Mapping[int, str], env: Path | str = TOOL_ENV,
                   timeout: float = 300) -> list[dict]:
    """Write TFLite Metadata into each TFLite file of ``paths`` in place (MediaPipe's object-detector writer for models
    with post-processing inside: image input with :func:`input_normalization`, outputs location / category / score /
    number of detections paired by tensor index, the first three grouped as ``detection_result``, labels packed as
    ``labels.txt`` from :func:`labels_in_class_order`). Metadata already there is replaced. Each file is written under
    a temporary name and renamed. Returns ``[{"file", "bytes"}]``; raises :class:`MetadataError` (files unchanged)
    when the tool venv is not built or the writer fails."""
    python = tool_python(env)
    if python is None:
        raise MetadataError(f"no MediaPipe tool venv at {env}: build it with `python scripts/write_metadata.py --build` "
                            "(~100 s, ~1 GB)")
    from mask_od.lite_internals import without_metadata

    labels = labels_in_class_order(label_map)
    paths, tmps, files = [Path(p) for p in paths], [], []
    try:
        for p in paths:
            mean, std = input_normalization(p)
            tmps.append(temp_sibling(p))
            tmps[-1].write_bytes(without_metadata(p.read_bytes()))  # the writer refuses to pack labels.txt twice
            files.append({"path": str(tmps[-1]), "labels": labels, "mean": mean, "std": std})
        _run_tool(python, ["write"], json.dumps({"files": files}), timeout)
        for tmp, p in zip(tmps, paths):
            replace_path(tmp, p)
    finally:
        for tmp in tmps:
            remove_path(tmp)
    return [{"file": p.name, "bytes": p.stat().st_size} for p in paths]


def metadata_labels(path: Path | str) -> list[str] | None:
    """The labels packed into a TFLite file's metadata (its ``labels.txt``), or None when it carries none."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return z.read("labels.txt").decode("utf-8").splitlines()
    except (zipfile.BadZipFile, KeyError):
        return None


def export_metadata(folder: Path, files: Sequence[str], label_map: Mapping[int, str], metadata: bool | None,
                    env: Path | str = TOOL_ENV) -> dict:
    """The export's metadata step for ``files`` (names in ``folder``): ``metadata`` None writes it when the tool venv
    is built and says why not otherwise, True builds the venv first when missing (minutes), False skips it. Prints one
    line; returns ``{"written": [names], "writer", "seconds"}`` or ``{"written": [], "skipped": why}``. Raises
    :class:`MetadataError` when asked for (True) and it cannot be written."""
    t0 = time.perf_counter()
    if metadata is False or not files:
        why = "metadata=False" if files else "no TFLite file"
    elif metadata is None and tool_python(env) is None:
        why = (f"no MediaPipe tool venv at {env} (build it and write metadata into this export: "
               "`python scripts/write_metadata.py EXPORT_DIR --build`, ~100 s and ~1 GB once)")
    else:
        if metadata:
            build_tool_env(env)
        try:
            write_metadata([folder / f for f in files], label_map, env)
        except MetadataError as e:
            if metadata:
                raise
            why = f"the writer failed: {e}"
        else:
            out = {"written": list(files), "writer": MEDIAPIPE, "seconds": round(time.perf_counter() - t0, 1)}
            print(f"TFLite Metadata (labels, input normalization, output groups) written into {len(files)} file(s) "
                  f"by {MEDIAPIPE} in {out['seconds']:.0f} s", flush=True)
            return out
    print(f"TFLite Metadata not written into {len(files)} file(s): {why}", flush=True)
    return {"written": [], "skipped": why}


def mediapipe_detect(path: Path | str, rgb: np.ndarray, env: Path | str = TOOL_ENV, score_threshold: float = 0.0,
                     timeout: float = 120) -> list[dict]:
    """Run MediaPipe Tasks' ObjectDetector (in the tool venv) on uint8 RGB ``[H, W, 3]`` ``rgb`` with the TFLite file
    ``path`` as it is (its metadata decides labels and normalization). Returns ``[{"name", "score", "xywh"}]`` best
    first, ``xywh`` in pixels of ``rgb``. Raises :class:`MetadataError` when the venv is not built or MediaPipe
    refuses the file."""
    python = tool_python(env)
    if python is None:
        raise MetadataError(f"no MediaPipe tool venv at {env}: build it with `python scripts/write_metadata.py --build`")
    with tempfile.TemporaryDirectory() as d:
        np.save(Path(d) / "image.npy", np.ascontiguousarray(rgb, np.uint8))
        return _run_tool(python, ["detect", str(path), str(Path(d) / "image.npy"), str(score_threshold)], None,
                         timeout)["detections"]
