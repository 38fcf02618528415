"""Helpers for Mask_detection.ipynb: environment set-up (Colab or local), camera check, inline figures, TensorBoard."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterable


def in_colab() -> bool:
    return importlib.util.find_spec("google.colab") is not None


WATCHED_MODULES = ("numpy", "tensorflow", "tf_keras", "cv2", "pandas", "matplotlib")


def stale_modules(loaded: dict[str, str]) -> list[str]:
    """Modules of ``loaded`` (name -> version in memory) whose installed version now differs: a pip install replaced
    them under the running kernel, which keeps the old ones until it restarts."""
    from importlib.metadata import PackageNotFoundError, version

    dist = {"cv2": "opencv-python-headless", "tf_keras": "tf-keras"}
    out = []
    for name, v in loaded.items():
        try:
            installed = version(dist.get(name, name))
        except PackageNotFoundError:
            continue
        if installed != v and not installed.startswith(v + "."):  # cv2 says 4.13.0 for the wheel 4.13.0.92
            out.append(name)
    return out


def setup(requirements: Path | str = "requirements-colab.txt", install_in_colab: bool = True) -> dict:
    """On Colab, pip-install what its runtime lacks (``requirements-colab.txt``: Model Garden and LiteRT, pinned as in
    requirements.txt; Colab's own NumPy, pandas, OpenCV and Jupyter are kept); everywhere, report TensorFlow and the
    devices. If the install still replaced a package the kernel had already loaded (a Colab image older than the pins),
    it stops with the one thing to do: restart the session and run all again (the install is kept)."""
    info = {"colab": in_colab()}
    if info["colab"] and install_in_colab:
        if not Path(requirements).is_file():
            raise FileNotFoundError(f"{requirements}: not found; run the set-up cell from the repository's root folder")
        loaded = {m: getattr(sys.modules[m], "__version__", "") for m in WATCHED_MODULES if m in sys.modules}
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-r", str(requirements)], check=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "-e", "."], check=True)
        if stale := stale_modules(loaded):
            raise RuntimeError(f"the install replaced {', '.join(stale)} while an older version is loaded in this session: "
                               "restart it (Runtime > Restart session), then run all cells again; the install is kept")
    if info["colab"]:
        try:  # third-party widgets (the labelling widget) need Colab's custom widget manager
            from google.colab import output  # type: ignore[import-not-found]

            output.enable_custom_widget_manager()
        except (ImportError, AttributeError):
            pass
    from mask_od.runtime import quiet_tensorflow

    quiet_tensorflow()
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    info.update({"tensorflow": tf.__version__, "gpus": [g.name for g in gpus], "cpus": os.cpu_count()})
    print(f"TensorFlow {tf.__version__}; {'GPU: ' + ', '.join(info['gpus']) if gpus else 'no GPU, training on ' + str(os.cpu_count()) + ' CPU cores'}"
          + ("; running on Google Colab" if info["colab"] else ""))
    return info


def camera_available(index: int = 0) -> bool:
    """True when a local camera opens (always False on Colab, whose camera is the browser's)."""
    if in_colab() or (sys.platform.startswith("linux") and not Path(f"/dev/video{index}").exists()):
        return False
    import cv2

    cap = cv2.VideoCapture(index)
    ok = cap.isOpened()
    cap.release()
    return ok


def show_images(paths: Iterable[Path | str | None], width: int = 900) -> None:
    """Display PNG/JPEG files inline (missing ones are skipped)."""
    from IPython.display import Image, display

    for p in paths:
        if p is not None and Path(p).is_file():
            display(Image(filename=str(p), width=width))


def tensorboard(logdir: Path | str, headless: bool = False) -> None:
    """Start TensorBoard inline in Jupyter/Colab; headless (papermill, CI) only prints the command."""
    print(f"TensorBoard: tensorboard --logdir {logdir}")
    if headless:
        return
    from IPython import get_ipython

    ip = get_ipython()
    if ip is not None:
        ip.run_line_magic("load_ext", "tensorboard")
        ip.run_line_magic("tensorboard", f"--logdir {logdir}")


# Browser side of the Colab webcam: getUserMedia once, then each maskodGrab(q) returns one frame as a JPEG data URL.
WEBCAM_JS = """
  window._maskod = window._maskod || {};
  async function maskodStart() {
    if (window._maskod.video) return;
    const video = document.createElement('video'); video.style.display = 'none'; video.muted = true;
    const stream = await navigator.mediaDevices.getUserMedia({video: true});
    document.body.appendChild(video); video.srcObject = stream; await video.play();
    window._maskod.video = video; window._maskod.stream = stream;
  }
  async function maskodGrab(q) {
    await maskodStart(); const v = window._maskod.video;
    const c = document.createElement('canvas'); c.width = v.videoWidth; c.height = v.videoHeight;
    c.getContext('2d').drawImage(v, 0, 0); return c.toDataURL('image/jpeg', q);
  }
  function maskodStop() {
    if (window._maskod.stream) { window._maskod.stream.getTracks().forEach(t => t.stop()); }
    if (window._maskod.video) { window._maskod.video.remove(); }
    window._maskod = {};
  }
  window.maskodGrab = maskodGrab; window.maskodStop = maskodStop;
"""


def frame_from_data_url(data: str):
    """A ``data:image/jpeg;base64,...`` URL (what ``canvas.toDataURL`` gives) -> BGR uint8 ``[H, W, 3]``, or None
    when it holds no decodable image (an empty canvas gives ``data:,``)."""
    import base64
    import binascii

    import cv2
    import numpy as np

    if not isinstance(data, str) or "," not in data:
        return None
    try:
        raw = base64.b64decode(data.split(",", 1)[1], validate=True)
    except (binascii.Error, ValueError):
        return None
    return cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR) if raw else None


def colab_webcam_frames(max_frames: int | None = None, quality: float = 0.8, eval_js=None, run_js=None):
    """Frames (BGR) from the browser's webcam in Colab, through JavaScript; a source for mask_od.live.run_live.
    ``eval_js`` (run an expression in the page, return its value) and ``run_js`` (load a script into the page)
    default to Colab's ``google.colab.output.eval_js`` and IPython's ``display(Javascript(...))``. Ends when the
    browser gives no frame (camera refused or closed)."""
    if eval_js is None:
        from google.colab.output import eval_js  # type: ignore[import-not-found]
    if run_js is None:
        from IPython.display import Javascript, display

        def run_js(code):
            display(Javascript(code))

    run_js(WEBCAM_JS)
    n = 0
    try:
        while max_frames is None or n < max_frames:
            frame = frame_from_data_url(eval_js(f"maskodGrab({quality})"))
            if frame is None:
                return
            n += 1
            yield frame
    finally:
        eval_js("maskodStop()")


def last_frame(video: Path | str, png: Path | str) -> Path | None:
    """Save the last frame of a video as PNG (for showing a recording in the notebook)."""
    import cv2

    cap = cv2.VideoCapture(str(video))
    frame, ok = None, True
    while ok:
        ok, f = cap.read()
        frame = f if ok else frame
    cap.release()
    if frame is None:
        return None
    cv2.imwrite(str(png), frame)
    return Path(png)


def prelabel_model(workspace: Path | str, classes: Iterable[str], shipped_size: int = 320) -> tuple[Path, str]:
    """The model whose boxes pre-label new pictures, and the line that says which: the newest export under
    ``workspace/exported-models`` trained on real photos (its run's ``data.json`` counts no generated demo image) that
    knows at least one of ``classes``; else the shipped face-mask model at ``shipped_size`` px (its classes matched by name). A model trained
    on the demo data, or of unknown data, is never used."""
    import json

    from mask_od.label_map import read_label_map
    from mask_od.runs import trained_on_real_photos
    from mask_od.shipped import default_live_model

    wanted = set(classes)
    skipped = []
    exports = {r.parent for r in Path(workspace, "exported-models").glob("*/export_report.json")}
    files = [next((e / f"model_{v}.tflite" for v in ("float32", "float16", "int8") if (e / f"model_{v}.tflite").is_file()),
                  None) for e in exports]  # any TFLite variant of an export (float32 first)
    files = sorted((f for f in files if f is not None), key=lambda p: p.stat().st_mtime)
    for tfl in reversed(files):
        try:
            run_dir = json.loads((tfl.parent / "export_report.json").read_text())["run_dir"]
            names = set(read_label_map(tfl.parent / "label_map.pbtxt").values())
        except (OSError, ValueError, KeyError):
            skipped.append(f"{tfl.parent.name} (no export report)")
            continue
        if not trained_on_real_photos(run_dir):
            skipped.append(f"{tfl.parent.name} (trained on demo data, or its data is unknown)")
        elif not names & wanted:
            skipped.append(f"{tfl.parent.name} (none of these classes)")
        else:
            return tfl, f"pre-labels from your export {tfl} (trained on your photos)"
    why = f"; not used: {', '.join(skipped)}" if skipped else ""
    return default_live_model(shipped_size), f"pre-labels from the shipped face-mask model (classes matched by name){why}"


def your_photos(folder: Path | str) -> tuple[int, list[Path], str]:
    """Images under ``folder`` (subfolders too) with and without an XML of the same name beside them: (labelled count,
    unlabelled images, the line that says so, naming a few skipped ones)."""
    from mask_od.annotations import list_image_files

    images = list_image_files(folder) if Path(folder).is_dir() else []
    missing = [p for p in images if not p.with_suffix(".xml").is_file()]
    labelled = len(images) - len(missing)
    names = ", ".join(p.name for p in missing[:3]) + (" …" if len(missing) > 3 else "")
    line = f"your photos in {folder}: {labelled} labelled, {len(missing)} without labels" + (f" (skipped): {names}" if missing else "")
    return labelled, missing, line


def detect_photos(detector, folder: Path | str, out_dir: Path | str) -> list[Path]:
    """Run ``detector`` on every image of ``folder`` and save each with its boxes drawn as ``out_dir/<name>.png``
    (the notebook's "try it first" without a camera); prints what was found per photo. Returns the PNG paths."""
    import cv2

    from mask_od.detect import draw_detections
    from mask_od.sources import iter_folder

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for path, bgr in iter_folder(folder):  # a photo that cannot be decoded is named and skipped
        det = detector.predict(bgr[..., ::-1])
        counts = {n: det.names.count(n) for n in dict.fromkeys(det.names)}
        print(f"{path.name}: {len(det.names)} faces {counts}")
        png = out_dir / f"{path.stem}.png"
        cv2.imwrite(str(png), draw_detections(bgr[..., ::-1], det)[..., ::-1])
        paths.append(png)
    return paths


def training_settings(*, stages: str, image_size: int, steps: int, time_budget_min: float, batch_size: int,
                      learning_rate: float, anchor_size: float, pretrained: str) -> dict:
    """The notebook's training parameters (``STAGES``, ``IMAGE_SIZE``, ...) as config keys for
    :func:`mask_od.config.build_config`: with ``stages``, the run's size is at least its last stage's; evaluations,
    checkpoints, logs and warm-up follow the planned steps (``auto_intervals``). ``scripts/run_notebook.py`` builds a
    config from the same call before running any cell, so a value the config refuses is refused at once. Raises
    ValueError for a bad ``stages``."""
    from mask_od.schedule import parse_stages

    last = parse_stages(stages, image_size, learning_rate)[-1].image_size
    return dict(stages=stages, image_size=max(image_size, last), steps=steps, time_budget_min=time_budget_min,
                batch_size=batch_size, learning_rate=learning_rate, anchor_size=anchor_size, pretrained=pretrained,
                auto_intervals=True)


def live_model(export_dir: Path | str, shipped_size: int = 320) -> Path:
    """The model for the live step: this run's export (float32 TFLite, else its SavedModel), or the shipped face-mask
    model at ``shipped_size`` px when the run was not trained or exported here (says so)."""
    export_dir = Path(export_dir)
    for candidate in (export_dir / "model_float32.tflite", export_dir / "saved_model"):
        if candidate.exists():
            return candidate
    from mask_od.shipped import default_live_model

    print(f"no export in {export_dir} (training or export skipped): using the shipped face-mask model at {shipped_size} px")
    return default_live_model(shipped_size)


def show_monitor(monitor, width: int = 1200, height: int = 700, headless: bool = False) -> None:
    """Show a :class:`mask_od.serve.BackgroundMonitor`'s page in the notebook: an IFrame of its loopback URL on a local
    Jupyter; on Colab the kernel's port is served to the browser by ``google.colab.output.serve_kernel_port_as_iframe``;
    headless only prints the URL."""
    print(f"monitor: {monitor.url}  (JSON: {monitor.url}api/stats)")
    if headless:
        return
    from urllib.parse import urlparse

    if in_colab():
        from google.colab import output

        output.serve_kernel_port_as_iframe(urlparse(monitor.url).port, width=width, height=height)
        return
    from IPython.display import IFrame, display

    display(IFrame(monitor.url, width, height))


def wait_for_monitor(monitor, max_seconds: float, poll_s: float = 0.5) -> str:
    """Wait until every source of ``monitor`` has ended (video files and folders play once) or ``max_seconds`` passed
    (a camera never ends); returns which, for the notebook to print. Ctrl-C / the stop button ends the wait early."""
    import time

    deadline = time.monotonic() + max_seconds
    try:
        while time.monotonic() < deadline:
            if all(s["state"] == "ended" for s in monitor.monitor.stats()["sources"]):
                return "every source ended"
            time.sleep(poll_s)
    except KeyboardInterrupt:
        return "stopped by you"
    return f"{max_seconds:g} s passed"
