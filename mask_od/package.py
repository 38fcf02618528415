"""Package a trained run as a self-contained model folder (what ``models/face_mask`` is): model variables only,
TFLite files, label map, the run's config, ``manifest.json`` with sha256 sums, and a model card listing them."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Mapping, Sequence

from mask_od.fileio import refuse_existing, remove_path, replace_path, temp_sibling
from mask_od.shipped import CHECKPOINT, MANIFEST, ShippedModelError, manifest_anchors, read_manifest, tflite_name, write_manifest


def _commit() -> str:
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run_facts(run_dir: Path, which: str = "best") -> dict:
    """What the card says of a run: ``steps`` of the weights packaged from it (``which``), ``training_minutes`` of its plan."""
    import tensorflow as tf

    from mask_od.runs import weights_checkpoint

    plan = json.loads((run_dir / "plan.json").read_text()) if (run_dir / "plan.json").is_file() else {}
    return {"steps": int(tf.train.load_variable(weights_checkpoint(run_dir, which), "step/.ATTRIBUTES/VARIABLE_VALUE")),
            "training_minutes": round(plan.get("spent_seconds", 0) / 60, 1)}


def check_size_runs(run_dir: Path, sizes: Sequence[int], size_runs: Mapping[int, Path | str] | None) -> dict[int, Path]:
    """``size_runs`` as {size: run directory}, once each fits ``run_dir``: a size of ``sizes``, the same label map,
    backbone and anchors (its TFLite files must decide like the packaged checkpoint's classes and anchors).
    Raises :class:`ShippedModelError` naming both runs and what differs."""
    from mask_od.config import build_config
    from mask_od.label_map import read_label_map
    from mask_od.runs import require_run_dir
    from mask_od.train import ANCHOR_KEYS

    main_cfg, main_lm = build_config(run_dir / "config.yaml"), read_label_map(run_dir / "label_map.pbtxt")
    out = {}
    for size, other in (size_runs or {}).items():
        other = require_run_dir(other)
        if int(size) not in sizes:
            raise ShippedModelError(f"size run {other} for {size} px: {size} is not one of the packaged sizes "
                                    f"{', '.join(map(str, sizes))} (add it to image_size)")
        cfg, lm = build_config(other / "config.yaml"), read_label_map(other / "label_map.pbtxt")
        wrong = ([f"label map {dict(lm)} (the main run's: {dict(main_lm)})"] if dict(lm) != dict(main_lm) else []) + [
            f"{k} {getattr(cfg, k)!r} (the main run's: {getattr(main_cfg, k)!r})"
            for k in ANCHOR_KEYS if getattr(cfg, k) != getattr(main_cfg, k)]
        if wrong:
            raise ShippedModelError(f"size run {other} for {size} px does not fit the main run {run_dir}: {'; '.join(wrong)}")
        out[int(size)] = other
    return out


def package_model(run_dir: Path | str, out_dir: Path | str, tflite: bool = True, image_size: int | Sequence[int] = 320,
                  check_records: str | None = None, num_check: int = 50, card: str = "", examples: tuple = (),
                  overwrite: bool = False, which: str = "best", size_runs: Mapping[int, Path | str] | None = None) -> dict:
    """Write ``out_dir`` from the best (else moving-average, else latest) checkpoint of ``run_dir``:
    ``checkpoint/model.*`` (model variables only, stored as float16: half the bytes; readers cast it back, see
    :func:`mask_od.runs.restore_weights`), ``label_map.pbtxt``, ``config.yaml``, with ``tflite`` float32 and int8
    TFLite files at each of ``image_size`` (one size or several; names from :func:`mask_od.shipped.tflite_name`:
    ``model_{variant}.tflite`` at the first, ``model_{size}_{variant}.tflite`` at others), each checked against the
    SavedModel on ``check_records`` like any export (reports kept as ``export_report.json``, ``export_report_{size}.json``),
    ``manifest.json`` (``tflite_files``: size -> variant -> file) and ``README.md``: ``card`` (markdown: data, figures,
    weaknesses) followed by the files and their sha256; ``examples`` (image paths) are copied into ``examples/``. Built
    in a temporary folder and renamed; an existing ``out_dir`` is replaced only with ``overwrite`` and only when it is
    a packaged model. ``which="latest"``: the raw weights of the latest checkpoint instead. ``size_runs``: {size: run
    directory} whose TFLite files at that size come from that run (e.g. a short fine-tune at 320 started from
    ``run_dir``), checked by :func:`check_size_runs`; the manifest's ``tflite_runs`` says per size which run, its steps
    and minutes. Returns the manifest."""
    import tensorflow as tf

    from mask_od.config import image_size_problem
    from mask_od.export import export_model
    from mask_od.runs import cast_checkpoint, load_trained_model, require_run_dir

    sizes = [image_size] if isinstance(image_size, int) else [int(s) for s in image_size]
    if why := next(filter(None, map(image_size_problem, sizes)), ""):
        raise ShippedModelError(why)
    run_dir, out_dir = require_run_dir(run_dir), Path(out_dir)
    if size_runs and not tflite:
        raise ShippedModelError(f"size runs {', '.join(map(str, size_runs.values()))} give TFLite files: not with tflite=False")
    size_runs = check_size_runs(run_dir, sizes, size_runs)
    if out_dir.exists():
        refuse_existing(out_dir, overwrite)
        if not (out_dir / MANIFEST).is_file():
            raise ShippedModelError(f"{out_dir} exists and is not a packaged model (no {MANIFEST}): refusing to replace it")
    t0 = time.perf_counter()
    tmp = temp_sibling(out_dir)
    tmp.mkdir(parents=True)
    try:
        model, config, label_map = load_trained_model(run_dir, which)
        (tmp / CHECKPOINT).parent.mkdir()
        float32 = tf.train.Checkpoint(model=model).write(str(tmp / ".float32" / "model"))
        cast_checkpoint(float32, tmp / CHECKPOINT, "float16")
        shutil.rmtree(tmp / ".float32")
        shutil.copyfile(run_dir / "label_map.pbtxt", tmp / "label_map.pbtxt")
        shutil.copyfile(run_dir / "config.yaml", tmp / "config.yaml")
        for image in examples:
            (tmp / "examples").mkdir(exist_ok=True)
            shutil.copyfile(image, tmp / "examples" / Path(image).name)
        reports, tflite_files = {}, {}
        for size in sizes if tflite else []:
            export = tmp / ".export"
            reports[size] = export_model(size_runs.get(size, run_dir), export, tflite=("float32", "int8"), check_records=check_records,
                                         num_check=num_check, image_size=size, which=which)
            tflite_files[str(size)] = {v: tflite_name(size, v, sizes[0]) for v in ("float32", "int8")}
            for v, name in tflite_files[str(size)].items():
                shutil.move(export / f"model_{v}.tflite", tmp / name)
            shutil.move(export / "export_report.json", tmp / ("export_report.json" if size == sizes[0] else f"export_report_{size}.json"))
            shutil.rmtree(export)
        facts = run_facts(run_dir, which)  # steps of the packaged weights
        runs = {str(s): {"run_dir": str(size_runs.get(s, run_dir)), **(run_facts(size_runs[s], which) if s in size_runs else facts)}
                for s in sizes} if tflite else {}  # which run each size's TFLite files come from
        info = {"run_dir": str(run_dir), "backbone": config.backbone, "anchor_size": config.anchor_size,
                "anchor_aspect_ratios": config.anchor_aspect_ratios,
                "trained_image_size": config.image_size, "stages": config.stages, "tflite_image_size": sizes[0] if tflite else None,
                **({"tflite_files": tflite_files, "tflite_runs": runs} if tflite else {}),
                "classes": {str(k): v for k, v in label_map.items()}, **facts, "checkpoint_dtype": "float16",
                "commit": _commit(), "created": time.strftime("%Y-%m-%d")}
        manifest = write_manifest(tmp, info)
        (tmp / "README.md").write_text(model_card(manifest, card, reports), encoding="utf-8")
        replace_path(tmp, out_dir)
    finally:
        remove_path(tmp)
    print(f"packaged {run_dir} -> {out_dir} in {time.perf_counter() - t0:.0f} s", flush=True)
    return manifest


def update_card(folder: Path | str, card: str) -> Path:
    """Rewrite ``folder/README.md`` with new text above the same facts (the card is not hashed: no sum changes)."""
    from mask_od.fileio import write_text_atomic

    folder = Path(folder)
    return write_text_atomic(folder / "README.md", model_card(read_manifest(folder), card, read_reports(folder)), overwrite=True)


def read_reports(folder: Path | str) -> dict[int, dict]:
    """The export reports of a packaged model folder by TFLite size (``export_report.json`` at the first size,
    ``export_report_{size}.json`` at others)."""
    folder, manifest = Path(folder), read_manifest(folder)
    sizes = [int(s) for s in manifest.get("tflite_files") or [manifest.get("tflite_image_size") or 320]]
    out = {}
    for i, size in enumerate(sizes):
        path = folder / ("export_report.json" if i == 0 else f"export_report_{size}.json")
        if path.is_file():
            out[size] = json.loads(path.read_text())
    return out


def model_card(manifest: dict, card: str, reports: dict[int, dict] | None) -> str:
    """``card`` then the facts of the manifest: how it was made, the TFLite check at each size (``reports``: size ->
    export report) and every file with its sha256."""
    lines = [card.rstrip(), "", "## Made by", "",
             f"- commit `{manifest['commit']}` of mask_od, {manifest['created']}; {manifest['steps']:,} steps, "
             f"{manifest['training_minutes']} min of training; stages `{manifest['stages'] or manifest['trained_image_size']}`",
             f"- backbone `{manifest['backbone']}`, anchor_size {manifest['anchor_size']}, anchor aspect ratios "
             f"{manifest_anchors(manifest)['anchor_aspect_ratios']}, classes "
             + ", ".join(f"{k}: {v}" for k, v in manifest["classes"].items())]
    lines += [f"- the {size} px TFLite files: from run `{r['run_dir']}`, {r['steps']:,} steps, {r['training_minutes']} min of training"
              for size, r in (manifest.get("tflite_runs") or {}).items() if r["run_dir"] != manifest.get("run_dir")]
    for size, report in (reports or {}).items():
        if not report.get("check") or report["check"].get("skipped"):
            continue
        chk = report["check"]
        lines += ["", f"## TFLite files at {size} px against the SavedModel ({chk['images']} images of the check records; "
                  "the export fails when a file does not decide like the SavedModel: mask_od/parity.py)", "",
                  "| file | mAP@0.5 | " + " | ".join(manifest["classes"].values()) + " |",
                  "|---|---|" + "---|" * len(manifest["classes"])]
        names = manifest.get("tflite_files", {}).get(str(size), {})
        for k, v in chk.items():
            if isinstance(v, dict) and "mAP50" in v:
                per = " | ".join("–" if v["AP50_per_class"].get(n) is None else f"{v['AP50_per_class'][n]:.3f}" for n in manifest["classes"].values())
                lines.append(f"| {names.get(k, k)} | {v['mAP50']:.3f} | {per} |")
    lines += ["", "## Files (checked when loaded: a file whose sha256 differs is refused)", "", "| file | bytes | sha256 |", "|---|---|---|"]
    lines += [f"| `{rel}` | {size:,} | `{digest}` |" for rel, digest, size in
              ((rel, d, manifest.get("sizes", {}).get(rel, 0)) for rel, d in manifest["files"].items())]
    return "\n".join(lines) + "\n"


def add_metadata(folder: Path | str, env: Path | str | None = None, build: bool = False) -> dict:
    """Write TFLite Metadata into every ``model_*.tflite`` of an export or packaged model folder (``label_map.pbtxt``
    beside them; :func:`mask_od.metadata.write_metadata`) and record it as ``metadata`` in its ``export_report.json``;
    a packaged model's ``manifest.json`` sums and card (same text above the facts) are rewritten to match. ``env``:
    the MediaPipe tool venv (default :data:`mask_od.metadata.TOOL_ENV`), built first when missing with ``build``.
    Returns the ``metadata`` entry; raises :class:`mask_od.metadata.MetadataError` naming what is missing."""
    from mask_od.fileio import write_text_atomic
    from mask_od.label_map import read_label_map
    from mask_od.metadata import TOOL_ENV, MetadataError, export_metadata

    folder = Path(folder)
    files = sorted(p.name for p in folder.glob("model_*.tflite"))
    if not files:
        raise MetadataError(f"{folder}: no model_*.tflite here (pass an export folder or a packaged model folder)")
    if not (folder / "label_map.pbtxt").is_file():
        raise MetadataError(f"{folder}: no label_map.pbtxt beside the TFLite files")
    entry = export_metadata(folder, files, read_label_map(folder / "label_map.pbtxt"), True if build else None, env or TOOL_ENV)
    if not entry["written"]:
        raise MetadataError(f"{folder}: {entry['skipped']}")
    report = folder / "export_report.json"
    if report.is_file():
        write_text_atomic(report, json.dumps({**json.loads(report.read_text()), "metadata": entry}, indent=1), overwrite=True)
    if (folder / MANIFEST).is_file():
        card = folder / "README.md"
        write_manifest(folder, {k: v for k, v in read_manifest(folder).items() if k not in ("files", "sizes")})
        update_card(folder, card.read_text(encoding="utf-8").split("\n## Made by")[0] if card.is_file() else f"# {folder.name}\n")
    return entry
