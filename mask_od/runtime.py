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


class SigintScope:
    """Within the ``with`` block, and in the main thread only (signal handlers live there), SIGINT (Ctrl-C) sets the
    class flag ``seen`` and calls the subclass's ``_handle(frame)``; the handler found on entry is put back on exit."""

    seen = False  # on the class: a loop reads it without the instance

    def __enter__(self):
        import signal
        import threading

        type(self).seen, self.previous = False, None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def _on_sigint(self, signum, frame) -> None:
        type(self).seen = True
        self._handle(frame)

    def _handle(self, frame) -> None:
        raise NotImplementedError

    def __exit__(self, *exc) -> None:
        import signal

        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        type(self).seen = False
