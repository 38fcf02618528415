"""Helpers shared by the scripts: make the repo importable without installation, quiet TensorFlow's C++ logs."""

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
