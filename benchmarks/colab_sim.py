"""Run Mask_detection.ipynb as on Google Colab, on this machine, and report what its set-up cell changed.

What it builds: a Python 3.12 venv with Colab's versions of the packages that matter (colab_pins.txt, from Colab's
published pip freeze); a stand-in `google.colab` (imported by the kernel at start, as Colab does; it preloads the
modules named by --preload, and its `output.eval_js` answers the webcam JavaScript with generated frames); an empty
folder like /content holding the notebook alone, with REPO_URL pointing at this repository (the committed HEAD is
cloned). The notebook then runs with HEADLESS False: Colab install, TensorBoard magic, browser-webcam live path.
When a cell stops with "restart", the kernel is restarted and the notebook run again, as a user would.

python benchmarks/colab_sim.py [--dir /tmp/colab_sim] [--reuse] [--param STEPS=100 ...]
Not run by the tests: it installs TensorFlow into a new venv (~2 min) and trains the demo (~8 min on 2 cores)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from _common import ROOT, WEIGHTS

STUB_OUTPUT = '''"""Stand-in for google.colab.output: eval_js answers mask_od's webcam JavaScript with generated frames."""
import base64

_frames = 0


def eval_js(expr, ignore_result=False, timeout_sec=None):
    global _frames
    if not expr.startswith("maskodGrab"):
        return None
    import cv2
    import numpy as np

    _frames += 1
    img = np.full((480, 640, 3), 80, np.uint8)
    cv2.circle(img, (120 + (7 * _frames) % 400, 240), 70, (170, 190, 220), -1)
    ok, buf = cv2.imencode(".jpg", img)
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode()
'''


def sh(cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], check=True, text=True, **kw)


def freeze(py: Path) -> dict[str, str]:
    out = sh([py, "-m", "pip", "list", "--format=json"], capture_output=True).stdout
    return {p["name"].lower().replace("_", "-"): p["version"] for p in json.loads(out)}


def python312() -> str:
    """A Python 3.12 that runs (Colab's version): on PATH, or a pyenv install (its shim fails when 3.12 is not global)."""
    for c in [shutil.which("python3.12"), *sorted(Path.home().glob(".pyenv/versions/3.12*/bin/python"))]:
        if c and subprocess.run([str(c), "--version"], capture_output=True).returncode == 0:
            return str(c)
    raise SystemExit("no Python 3.12 found (Colab's version): pass --python")


def build_env(d: Path, python: str, reuse: bool, preload: list[str]) -> Path:
    venv, py = d / "venv", d / "venv" / "bin" / "python"
    if not (reuse and (venv / ".pins-installed").is_file()):
        shutil.rmtree(venv, ignore_errors=True)
        t0 = time.perf_counter()
        sh([python, "-m", "venv", venv])
        sh([py, "-m", "pip", "install", "-q", "-r", Path(__file__).with_name("colab_pins.txt")])
        (venv / ".pins-installed").touch()
        print(f"Colab-like venv built in {time.perf_counter() - t0:.0f} s")
    site = Path(sh([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True).stdout.strip())
    stub = site / "google" / "colab"
    stub.mkdir(parents=True, exist_ok=True)
    (stub / "__init__.py").write_text('"""Stand-in for google.colab (colab_sim.py)."""\n'
                                      + "".join(f"import {m}  # loaded before the first cell\n" for m in preload))
    (stub / "output.py").write_text(STUB_OUTPUT)
    kernel = d / "jupyter" / "kernels" / "colabsim"
    kernel.mkdir(parents=True, exist_ok=True)
    (kernel / "kernel.json").write_text(json.dumps({
        "argv": [str(py), "-m", "ipykernel_launcher", "-f", "{connection_file}",
                 "--IPKernelApp.exec_lines=import google.colab"],
        "display_name": "Colab-like", "language": "python",
        "env": {"PATH": f"{py.parent}{os.pathsep}{os.environ.get('PATH', '')}"}}))
    return py


def run_notebook(content: Path, params: dict, out: Path, jupyter_dir: Path) -> str | None:
    """Execute the notebook in the Colab-like kernel; the error text of the failing cell, or None."""
    import papermill as pm

    os.environ["JUPYTER_PATH"] = str(jupyter_dir)
    try:
        pm.execute_notebook(str(content / "Mask_detection.ipynb"), str(out), parameters=params, kernel_name="colabsim",
                            cwd=str(content), log_output=False, progress_bar=False)
    except pm.PapermillExecutionError as e:
        return f"{e.ename}: {e.evalue}"
    return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=Path("/tmp/colab_sim"))
    ap.add_argument("--python", default=None, help="Python 3.12 to build the venv with (default: found)")
    ap.add_argument("--repo", type=Path, default=ROOT, help="the repository to clone (its committed HEAD)")
    ap.add_argument("--reuse", action="store_true", help="keep an existing Colab-like venv (its earlier installs too)")
    ap.add_argument("--preload", default="numpy,pandas,matplotlib", help="modules the kernel has loaded at start")
    ap.add_argument("--param", nargs="*", default=[], help="notebook parameters NAME=VALUE")
    args = ap.parse_args(argv)
    import yaml

    d = args.dir.resolve()
    py = build_env(d, args.python or python312(), args.reuse, [m for m in args.preload.split(",") if m])
    content = d / "content"
    shutil.rmtree(content, ignore_errors=True)
    content.mkdir(parents=True)
    shutil.copy(args.repo / "Mask_detection.ipynb", content)  # the notebook uploaded alone
    params = {"REPO_URL": str(args.repo.resolve()), "HEADLESS": False, "WORKSPACE": "workspace"}
    if WEIGHTS.is_file():  # Colab downloads the ImageNet weights; this machine has no internet
        params["PRETRAINED"] = str(WEIGHTS)
    params.update({k: yaml.safe_load(v) for k, v in (p.split("=", 1) for p in args.param)})

    before, runs, t0 = freeze(py), [], time.perf_counter()
    for attempt in range(3):
        out = content / f"executed_{attempt + 1}.ipynb"
        t = time.perf_counter()
        err = run_notebook(content, params, out, d / "jupyter")
        runs.append({"run": attempt + 1, "s": round(time.perf_counter() - t, 1), "error": err})
        print(f"run {attempt + 1}: {runs[-1]['s']} s, {err or 'no error'}")
        if not (err and "restart" in err.lower()):
            break
    subprocess.run(["pkill", "-f", f"tensorboard.*{content}"], check=False)  # the TensorBoard magic's server
    after = freeze(py)
    changed = {n: f"{before.get(n, '-')} -> {v}" for n, v in after.items() if before.get(n) != v}
    nb = json.loads(out.read_text())
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    text = "".join("".join(o.get("text", "")) for o in outputs if o.get("output_type") == "stream")
    report = {"runs": runs, "minutes": round((time.perf_counter() - t0) / 60, 1), "changed_packages": changed,
              "cell_errors": sum(o.get("output_type") == "error" for o in outputs),
              "inline_images": sum("image/png" in o.get("data", {}) for o in outputs),
              "lines": [l for l in text.splitlines() if "mAP@0.5" in l or "running on Google Colab" in l or "FPS" in l]}
    (d / "report.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return 0 if report["cell_errors"] == 0 and runs[-1]["error"] is None else 1


if __name__ == "__main__":
    raise SystemExit(main())
