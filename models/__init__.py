"""Packaged detector models (face_mask); installed inside the package as mask_od.models."""
