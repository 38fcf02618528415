"""One command for every step (installed as ``mask-od``): ``mask-od STEP [arguments of scripts/STEP]``, e.g.
``mask-od train my.yaml steps=3000`` or ``mask-od detect --source 0`` (a script's name works as its step:
``mask-od generate_tfrecord``); ``mask-od`` alone lists the steps."""

from __future__ import annotations

import importlib
import sys

STEPS = {  # step -> the script module (scripts/*.py, installed as mask_od.scripts)
    "capture": "capture_images",
    "partition": "partition_dataset",
    "tfrecord": "generate_tfrecord",
    "train": "train",
    "evaluate": "evaluate",
    "export": "export",
    "metadata": "write_metadata",
    "detect": "detect_live",
    "package": "package_model",
    "serve": "serve",
}


def fraction(text: str) -> float:
    """argparse type: a number from 0 to 1 (a score threshold)."""
    import argparse

    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not from 0 to 1")
    return v


def at_least(low: float, kind=int):
    """argparse type: a number (``kind``) of at least ``low``."""
    import argparse

    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'a whole number' if kind is int else 'a number'}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"{text} is less than {low}")
        if v != v or v == float("inf"):
            raise argparse.ArgumentTypeError(f"{text} is not a finite number")
        return v

    return parse


def error_exit(error: BaseException | str) -> int:
    """Print ``error: <message>`` to stderr (where argparse prints its own) and return 2, a script's exit code for bad
    input or a failed step; the message names the file and what is wrong."""
    print(f"error: {error}", file=sys.stderr, flush=True)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Run the script of ``argv[0]`` with the rest of ``argv``; returns its exit code (2 for an unknown step)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv:  # the script's name works too (the TF OD API tutorial's generate_tfrecord.py, partition_dataset.py)
        name = argv[0].replace("\\", "/").rsplit("/", 1)[-1].removesuffix(".py")  # scripts/train.py, train.py, generate_tfrecord
        argv[0] = {v: k for k, v in STEPS.items()}.get(name, name if name in STEPS else argv[0])
    if not argv or argv[0] not in STEPS:
        if argv and argv[0] not in ("-h", "--help"):
            error_exit(f"unknown step {argv[0]!r}")
        print("usage: mask-od STEP [ARGS ...]   (mask-od STEP --help for a step's arguments)\nsteps: "
              + ", ".join(f"{k} (scripts/{v}.py)" for k, v in STEPS.items()))
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    sys.argv[0] = f"mask-od {argv[0]}"  # the step's usage line names the command typed
    return importlib.import_module(f"mask_od.scripts.{STEPS[argv[0]]}").main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
