"""Process set-up shared by the scripts and the notebook, done before TensorFlow starts: its C++ log level."""

from __future__ import annotations

import glob
import os
import shutil


def has_nvidia_device() -> bool:
    """An NVIDIA driver is present (device nodes or nvidia-smi): only then can TensorFlow find a GPU."""
    return bool(glob.glob("/dev/nvidia[0-9]*")) or shutil.which("nvidia-smi") is not None


def quiet_tensorflow() -> None:
    """Hide TensorFlow's C++ info and warnings; on a machine without an NVIDIA driver also its error-level
    ``failed call to cuInit`` line, which every CPU run printed (training says once that it runs on the CPU).
    A value the user set is kept. Call before ``import tensorflow``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2" if has_nvidia_device() else "3")
