"""Run Mask_detection.ipynb headless from top to bottom (papermill) and keep the executed copy in the workspace.

python scripts/run_notebook.py [NAME=VALUE ...]   (names of the notebook's parameters cell, e.g. STEPS=100)"""

import os
import sys
import time
from pathlib import Path

from mask_od.runtime import quiet_tensorflow

quiet_tensorflow()  # TensorFlow's C++ logs quieted before it starts

ROOT = Path(__file__).resolve().parents[1]


def parameters_cell() -> str:
    import json

    cells = json.loads((ROOT / "Mask_detection.ipynb").read_text(encoding="utf-8"))["cells"]
    return "".join(next(c for c in cells if c["cell_type"] == "code")["source"])


def parameter_defaults() -> dict:
    """The parameters cell's names and default values (each line ``NAME = literal  # comment``)."""
    import ast

    tree = ast.parse(parameters_cell())
    return {n.targets[0].id: ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)}


CHOICES = {"TFLITE": "mask_od.export:TFLITE_VARIANTS"}  # list parameters whose items must be one of these
INPUT_FOLDERS = ("DATA_DIR", "IMAGE_DIR", "LABEL_DIR")  # folders that must exist when given
SOURCE_PARAMETERS = ("TRY_SOURCE", "LIVE_SOURCE", "CAPTURE_SOURCE")  # a file or folder, a stream URL or a camera index


def typed_value(name: str, text: str, default):
    """``text`` (as typed after ``NAME=``) as the type of the parameter's default, read by
    :func:`mask_od.config.value_from_text` (the reading of ``key=value`` on the scripts' command lines), so a wrong one
    is refused before the notebook runs (it would otherwise surface cells later, after the demo data is written); a
    list parameter's items must be among its choices. Raises ValueError naming what is wrong."""
    from mask_od.config import value_from_text

    try:
        value = value_from_text(text, default)
    except ValueError as e:
        such = f" such as {','.join(default)}" if isinstance(default, list) and default else ""
        raise ValueError(f"{name}={text}: {e}{such} (its default is {default!r})") from None
    if isinstance(value, list) and name in CHOICES:
        import importlib

        module, attr = CHOICES[name].split(":")
        allowed = list(getattr(importlib.import_module(module), attr))
        if bad := [x for x in value if x not in allowed]:
            raise ValueError(f"{name}={text}: {', '.join(map(repr, bad))} is not one of {', '.join(allowed)}")
    return value  # text: RUN_NAME=2024 is the name "2024", DATA_DIR='data #1' a folder with a space and a hash


def check_parameters(values: dict) -> None:
    """Refuse, before any cell runs, what the notebook's cells would refuse later (after the demo data and records are
    written): the training config its config cell builds (``mask_od.notebook.training_settings``, the same call), the
    model it starts from (a shipped or packaged model's backbone and anchors, as training checks them; a weights file
    must exist), ``TEST_RATIO`` (as the split checks it), the counts of the live, capture and demo cells and
    ``RUN_NAME`` (one folder name: ``../x`` wrote the run outside the workspace, an empty one into
    ``models/`` itself). ``values``: every parameter, defaults included; paths are
    read from the repository root, the notebook's working directory. Raises ValueError naming the parameters."""
    import contextlib
    import inspect

    from mask_od.config import ConfigError, build_config
    from mask_od.errors import MaskODError
    from mask_od.notebook import training_settings
    from mask_od.shipped import is_packaged
    from mask_od.split import check_ratios
    from mask_od.weights import resolve_pretrained

    names = {n: n.upper() for n in inspect.signature(training_settings).parameters}
    given = lambda *keys: ", ".join(f"{k}={values[k]!r}" for k in keys)  # noqa: E731
    with contextlib.chdir(ROOT):
        try:
            settings = training_settings(**{n: values[name] for n, name in names.items()})
        except ValueError as e:
            raise ValueError(f"{given('STAGES')}: {e}") from None
        try:
            config = build_config(**settings)
        except ConfigError as e:
            raise ValueError(f"{given(*(names[k] for k in e.keys if k in names)) or 'the notebook parameters'}: {e}") from None
        try:
            if is_packaged(config.pretrained):
                from mask_od.transfer import check_packaged

                check_packaged(config)
            elif config.pretrained != "imagenet":  # a weights file (or none); imagenet is downloaded when training starts
                resolve_pretrained(config.pretrained, config.backbone)
        except MaskODError as e:
            raise ValueError(f"{given('PRETRAINED', 'ANCHOR_SIZE')}: {e}") from None
    try:
        check_ratios(values["TEST_RATIO"])
    except ValueError as e:
        raise ValueError(f"{given('TEST_RATIO')}: {e}") from None
    for name, least in (("LIVE_FRAMES", 1), ("NUM_CAPTURE", 1), ("NUM_DEMO_IMAGES", 10)):  # live, capture, demo cells
        if values[name] < least:
            raise ValueError(f"{given(name)}: must be {least} or more" + (" (the demo's photos are split into training "
                             "and test parts)" if name == "NUM_DEMO_IMAGES" else ""))
    if values["MONITOR_SECONDS"] < 0:
        raise ValueError(f"{given('MONITOR_SECONDS')}: must be 0 (skip the monitor) or more")
    name = values["RUN_NAME"]
    if not name.strip() or name in (".", "..") or any(c in name for c in "/\\"):
        raise ValueError(f"{given('RUN_NAME')}: must be one folder name (the run goes to WORKSPACE/models/RUN_NAME)")
    if not values["WORKSPACE"].strip():
        raise ValueError(f"{given('WORKSPACE')}: name the folder the notebook writes to (its default: workspace)")
    with contextlib.chdir(ROOT):
        from mask_od.shipped import default_live_model

        try:
            default_live_model(values["SHIPPED_SIZE"])
        except MaskODError as e:
            raise ValueError(f"{given('SHIPPED_SIZE')}: {e}") from None
        for name in (*INPUT_FOLDERS, *SOURCE_PARAMETERS):
            value = values[name]  # a folder or file; a source may also be a stream URL or a camera index
            if value and not (name in SOURCE_PARAMETERS and ("://" in value or value.isdigit())) and not Path(value).exists():
                raise ValueError(f"{given(name)}: no such file or folder" + (" (read from the repository root, the "
                                 f"notebook's working directory: {ROOT})" if not Path(value).expanduser().is_absolute() else ""))


def first_line(source: str) -> str:
    """The first line of a cell's code that is not a comment (shortened), to name the cell."""
    line = next((x.strip() for x in source.splitlines() if x.strip() and not x.strip().startswith("#")), "")
    return line if len(line) <= 60 else line[:57] + "..."


def main(argv=None) -> int:
    import papermill as pm

    from mask_od.cli import error_exit

    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__ + "\n\nThe parameters, with their defaults (the notebook's first cell):\n")
        print(parameters_cell())
        return 0
    params = {"HEADLESS": True}
    defaults = parameter_defaults()
    known = list(defaults)
    for a in argv:
        if "=" not in a:
            return error_exit(f"expected NAME=VALUE, got {a!r}")
        k, v = a.split("=", 1)
        if not k.strip():
            return error_exit(f"expected NAME=VALUE, got {a!r} (no name)")
        if k not in known:  # a typo would otherwise run the whole notebook with the default
            import difflib

            close = [x for x in known if x.lower() == k.lower()] or difflib.get_close_matches(k.upper(), known, n=1)
            return error_exit(f"{k} is not a parameter of Mask_detection.ipynb" + (f" (did you mean {close[0]}?)" if close else "")
                              + "; --help lists them")
        try:
            params[k] = typed_value(k, v, defaults[k])
        except ValueError as e:
            return error_exit(e)
    for k in ("WORKSPACE", *INPUT_FOLDERS, *SOURCE_PARAMETERS):  # the notebook's cells take paths as given: ~ expanded here
        if isinstance(params.get(k), str) and params[k].startswith("~"):
            params[k] = str(Path(params[k]).expanduser())
    try:
        check_parameters({**defaults, **params})
    except ValueError as e:
        return error_exit(e)
    workspace = Path(params.get("WORKSPACE", ROOT / "workspace"))
    workspace.mkdir(parents=True, exist_ok=True)
    out = workspace / "Mask_detection.executed.ipynb"
    os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
    t0 = time.perf_counter()
    print(f"running Mask_detection.ipynb with {params}; cell outputs follow", flush=True)
    try:
        pm.execute_notebook(str(ROOT / "Mask_detection.ipynb"), str(out), parameters=params, kernel_name="python3",
                            cwd=str(ROOT), progress_bar=True, stdout_file=sys.stdout, stderr_file=sys.stderr)
    except pm.PapermillExecutionError as e:  # a cell raised: its message, not papermill's traceback around it
        return error_exit(f"{e.evalue or e.ename} ({e.ename} in cell [{e.exec_count}]: {first_line(e.source)}; its traceback is "
                          f"in the executed copy {out})")
    print(f"notebook ran in {(time.perf_counter() - t0) / 60:.1f} min; executed copy: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
