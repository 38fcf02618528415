"""Shared by the scripts: TensorFlow's C++ logs quieted before it starts (the package is installed, editable)."""

from mask_od.runtime import quiet_tensorflow

quiet_tensorflow()
