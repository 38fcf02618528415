"""The command-line entries, one per step (python scripts/NAME.py, or mask-od STEP once installed)."""
