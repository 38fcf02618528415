"""mask_od installs like a package: a wheel carries the shipped model and the `mask-od` command, and both work from
any folder (not only from the repository)."""

import os
import subprocess
import sys
import sysconfig

import pytest
from conftest import ROOT, need_shared


def test_cli_lists_the_steps_and_runs_a_step(capsys):
    from mask_od.cli import STEPS, main

    assert main(["--help"]) == 0 and main([]) == 2 and main(["nope"]) == 2
    out, err = capsys.readouterr()
    assert "error: unknown step 'nope'" in err and "error" not in out and "steps: capture" in out  # errors on stderr
    for module in STEPS.values():
        assert (ROOT / "scripts" / f"{module}.py").is_file()
    with pytest.raises(SystemExit) as e:  # argparse's --help of the export step
        main(["export", "--help"])
    assert e.value.code == 0
    for script in ("generate_tfrecord", "partition_dataset.py", "tfrecord.py"):  # the script's name (the TF OD API tutorial's) works too
        with pytest.raises(SystemExit) as e:
            main([script, "--help"])
        assert e.value.code == 0
    assert main(["scripts/train.py", "--help"]) == 0  # train.py prints its config keys and returns
    out = capsys.readouterr().out
    assert "usage: mask-od tfrecord" in out and "usage: mask-od partition" in out and "Train (or resume) the detector" in out
    assert main(["nope.py"]) == 2 and "error: unknown step 'nope.py'" in capsys.readouterr().err


@pytest.mark.slow
def test_wheel_runs_live_detection_and_training_from_another_folder(tmp_path):
    """Build the wheel, install it (no dependencies) into a fresh venv that sees this environment's packages through
    a .pth file (TensorFlow is not installed twice), then from an empty folder: detect on the street video without
    --model (the shipped model inside the installed package) and train 2 steps from face_mask."""
    video = need_shared("data", "video", "street-masks.mp4")
    dist, venv, elsewhere = tmp_path / "dist", tmp_path / "venv", tmp_path / "elsewhere"
    run = lambda *a, **k: subprocess.run([str(x) for x in a], capture_output=True, text=True, timeout=600, **k)  # noqa: E731
    p = run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", dist, ROOT)
    assert p.returncode == 0, p.stdout + p.stderr
    wheel = next(dist.glob("mask_od-*.whl"))
    assert run(sys.executable, "-m", "venv", venv).returncode == 0
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # this venv's packages, not its mask_od finder
    p = run(venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel)
    assert p.returncode == 0, p.stdout + p.stderr
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"TF_CPP_MIN_LOG_LEVEL": "3"}
    py, cli = venv / "bin" / "python", venv / "bin" / "mask-od"
    p = run(py, "-c", "import mask_od, mask_od.shipped as s; print(mask_od.__file__); print(s.default_live_model())", cwd=elsewhere, env=env)
    assert p.returncode == 0 and all(line.startswith(str(site)) for line in p.stdout.split()), p.stdout + p.stderr
    p = run(cli, "detect", "--source", video, "--display", "none", "--max_frames", 5, cwd=elsewhere, env=env)
    assert p.returncode == 0 and f"model: {site}" in p.stdout and "5 frames" in p.stdout, p.stdout + p.stderr
    p = run(py, "-c", "from mask_od.synthetic import make_synthetic_dataset as m; from mask_od.prepare import prepare_dataset as p; "
            "d = m('data', num_images=8, size=128, seed=0); p(d.xml_dir, 'ws', d.image_dir, progress=False, plot=False)", cwd=elsewhere, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    p = run(cli, "train", "train_records=ws/annotations/train.record", "val_records=", "label_map=ws/annotations/label_map.pbtxt",
            "pretrained=face_mask", "image_size=128", "batch_size=2", "steps=2", "warmup_steps=1", "eval_every=0",
            "output_dir=ws/run", cwd=elsewhere, env=env)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    assert "from face_mask" in p.stdout and (elsewhere / "ws" / "run" / "checkpoints").is_dir(), p.stdout[-2000:]
