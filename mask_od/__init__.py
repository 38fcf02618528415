"""mask_od: a real-time mask / no-mask detector trained on your own photos (TF OD API workflow, without its pain)."""

__version__ = "0.1.0"
