"""Train the shipped face-mask model, and measure what detection-level transfer buys on a user's few photos.

python benchmarks/face_mask_model.py ship [--minutes 60] [key=value ...]
    The recipe (recipe_face_mask.yaml; the shipped model is from v2, see its model card) on all photos of ../shared/data/face-mask, no held-out part (its split-trained
    twin is `recipe_face_mask.py`, trained on 80% and scored on the other 20%). Writes benchmarks/results/ship/run.
    Then `python scripts/package_model.py benchmarks/results/ship/run models/face_mask` makes the shipped folder.
python benchmarks/face_mask_model.py pfv [--p_minutes 30] [--f_minutes 10] [--f_images 40]
    Splits the photos (seeded, stratified) into P (half), F (40 photos: what a user labels in an afternoon) and V (the
    rest); trains a face-mask model on P, packages it, then fine-tunes on F for the same budget from `imagenet` and from
    that model, and scores both on V. Writes benchmarks/results/pfv/ and its summary.json.
python benchmarks/face_mask_model.py pfv2 [--p_minutes 30] [--f_minutes 10] [--f_images 40]
    The two-class case (with_mask, without_mask: what the notebook's step 1 captures). The same P and its model as
    `pfv` (trained once, shared); F (40) and V are drawn from the other half's photos without mask_weared_incorrect.
    Fine-tunes on F from the P model with the class layer mapped by name, from the P model with the class layer
    re-initialised (the same photos under class names it does not know), and from imagenet; scores each and the P
    model alone on V. Writes benchmarks/results/pfv2/summary.json.
"""

import dataclasses
import json
import sys
import time
from pathlib import Path

from _common import FACE_MASK, RESULTS, ROOT, WEIGHTS, need

RECIPE = Path(__file__).with_name("recipe_face_mask.yaml")


def _records(anns, label_map, path: Path) -> str:
    from mask_od.tfrecord import write_tfrecords

    write_tfrecords(anns, label_map, path, overwrite=True, progress=False)
    return str(path)


def _label_map(out: Path) -> Path:
    from mask_od.label_map import write_label_map

    # the order of the recipe's split (by frequency), so the shipped ids are those of the twin
    return write_label_map({1: "with_mask", 2: "without_mask", 3: "mask_weared_incorrect"}, out / "label_map.pbtxt",
                           overwrite=True)


def _backbone_weights() -> str:
    return str(WEIGHTS) if WEIGHTS.is_file() else "imagenet"


def ship(minutes: float, overrides: dict, run: str = "run") -> None:
    from mask_od.annotations import parse_voc_dir
    from mask_od.config import build_config
    from mask_od.train import train

    out = RESULTS / "ship"
    (out / "workspace").mkdir(parents=True, exist_ok=True)
    anns = parse_voc_dir(need(FACE_MASK) / "annotations", FACE_MASK / "images")
    lm = _label_map(out / "workspace")
    records = out / "workspace" / "all.record"
    if not records.exists():
        _records(anns, lm, records)
    print(f"{len(anns)} photos, all used for training", flush=True)
    config = build_config(RECIPE, train_records=str(records), val_records="", label_map=str(lm), output_dir=str(out / run),
                          pretrained=_backbone_weights(), time_budget_min=minutes, **overrides)
    t0 = time.perf_counter()
    result = train(config)
    print(f"trained {result.step} steps in {(time.perf_counter() - t0) / 60:.1f} min: {config.output_dir}", flush=True)


def pfv(p_minutes: float, f_minutes: float, f_images: int, overrides: dict) -> None:
    from mask_od.annotations import parse_voc_dir
    from mask_od.split import split_annotations

    out = RESULTS / "pfv"
    ws = out / "workspace"
    ws.mkdir(parents=True, exist_ok=True)
    anns = parse_voc_dir(need(FACE_MASK) / "annotations", FACE_MASK / "images")
    halves = split_annotations(anns, test_ratio=0.5, seed=0)
    rest = split_annotations(halves.test, test_ratio=f_images / len(halves.test), seed=0)
    parts = {"P": halves.train, "F": rest.test, "V": rest.train}
    lm = _label_map(ws)
    rec = {k: _records(v, lm, ws / f"{k}.record") for k, v in parts.items()}
    (ws / "parts.json").write_text(json.dumps({k: [a.xml_path.name for a in v] for k, v in parts.items()}, indent=0))
    print({k: len(v) for k, v in parts.items()}, flush=True)
    summary = {"images": {k: len(v) for k, v in parts.items()}, "p_minutes": p_minutes, "f_minutes": f_minutes}

    p_run, p_model = _p_model(out, rec["P"], lm, p_minutes)
    from mask_od.evaluate import evaluate_model
    from mask_od.runs import load_trained_model

    for size in (320, 640):  # the P model alone, before any fine-tune: what F adds to it
        model, cfg, lm_p = load_trained_model(p_run, image_size=size)
        m = evaluate_model(model, cfg, lm_p, rec["V"], out_dir=out / f"P_alone_eval_{size}")
        summary[f"P_alone_{size}"] = {"mAP50": m["mAP50"], "AP50_per_class": {k: v["AP50"] for k, v in m["per_class"].items()}}
        print(f"P alone at {size} on V:", json.dumps(summary[f"P_alone_{size}"]), flush=True)
    runs = (("imagenet", _backbone_weights(), lm, rec), ("face_mask_P", str(p_model), lm, rec))
    _fine_tune_on_f(out, runs, f_minutes, overrides, summary)


def _p_model(out: Path, rec_p: str, lm: Path, p_minutes: float) -> tuple[Path, Path]:
    """The model trained on P (once; shared by pfv and pfv2) and its packaged folder."""
    from mask_od.config import build_config
    from mask_od.package import package_model
    from mask_od.train import train

    p_run = out / "P_run"
    p_config = build_config(RECIPE, train_records=rec_p, val_records="", label_map=str(lm), output_dir=str(p_run),
                            pretrained=_backbone_weights(), time_budget_min=p_minutes)
    if not (p_run / "DONE").exists():
        train(p_config)
        (p_run / "DONE").write_text("")
    p_model = out / "P_model"
    if not p_model.exists():
        package_model(p_run, p_model, tflite=False)
    return p_run, p_model


def pfv2(p_minutes: float, f_minutes: float, f_images: int, overrides: dict) -> None:
    from mask_od.annotations import parse_voc_dir
    from mask_od.evaluate import evaluate_model
    from mask_od.label_map import write_label_map
    from mask_od.runs import load_trained_model
    from mask_od.split import split_annotations

    shared, out = RESULTS / "pfv", RESULTS / "pfv2"
    (shared / "workspace").mkdir(parents=True, exist_ok=True)
    ws = out / "workspace"
    ws.mkdir(parents=True, exist_ok=True)
    anns = parse_voc_dir(need(FACE_MASK) / "annotations", FACE_MASK / "images")
    halves = split_annotations(anns, test_ratio=0.5, seed=0)  # P as in pfv
    two = [a for a in halves.test if "mask_weared_incorrect" not in a.names]
    rest = split_annotations(two, test_ratio=f_images / len(two), seed=0)
    parts = {"F": rest.test, "V": rest.train}
    lm3 = _label_map(shared / "workspace")
    lm2 = write_label_map({1: "with_mask", 2: "without_mask"}, ws / "label_map.pbtxt", overwrite=True)
    # the re-initialised baseline: the same photos and ids under names the P model does not know
    lm_other = write_label_map({1: "mask_on", 2: "mask_off"}, ws / "label_map_other_names.pbtxt", overwrite=True)
    renamed = {"with_mask": "mask_on", "without_mask": "mask_off"}
    rec = {k: _records(v, lm2, ws / f"{k}.record") for k, v in parts.items()}
    other = [dataclasses.replace(a, names=[renamed[n] for n in a.names]) for a in parts["F"] + parts["V"]]
    rec_other = {"F": _records(other[:len(parts["F"])], lm_other, ws / "F_other_names.record"),
                 "V": _records(other[len(parts["F"]):], lm_other, ws / "V_other_names.record")}
    p_rec = shared / "workspace" / "P.record"
    if not p_rec.exists():
        _records(halves.train, lm3, p_rec)
    (ws / "parts.json").write_text(json.dumps({k: [a.xml_path.name for a in v] for k, v in parts.items()}, indent=0))
    summary = {"images": {"P": len(halves.train), **{k: len(v) for k, v in parts.items()}},
               "boxes": {k: sum(a.num_boxes for a in v) for k, v in parts.items()}, "p_minutes": p_minutes,
               "f_minutes": f_minutes}
    print(summary, flush=True)
    p_run, p_model = _p_model(shared, str(p_rec), lm3, p_minutes)
    model, cfg, lm_p = load_trained_model(p_run, image_size=320)
    m = evaluate_model(model, cfg, lm_p, rec["V"], out_dir=out / "P_alone_eval_320")
    summary["P_alone_320"] = {"mAP50": m["mAP50"], "AP50_per_class": {k: v["AP50"] for k, v in m["per_class"].items()}}
    print("P alone at 320 on V:", json.dumps(summary["P_alone_320"]), flush=True)
    runs = (("face_mask_P_mapped", str(p_model), lm2, rec), ("face_mask_P_reinitialised", str(p_model), lm_other, rec_other),
            ("imagenet", _backbone_weights(), lm2, rec))
    _fine_tune_on_f(out, runs, f_minutes, overrides, summary)


def _fine_tune_on_f(out: Path, runs, f_minutes: float, overrides: dict, summary: dict) -> None:
    """A user's fine-tune per (name, start, label map, records {F, V}): the package defaults (320, one stage) with the
    time budget on F, scored on V at the end; the figures go into ``summary`` and ``out/summary.json``."""
    from mask_od.config import build_config
    from mask_od.train import train

    for name, init, lm, records in runs:
        run = out / f"F_from_{name}"
        config = build_config(None, train_records=records["F"], val_records=records["V"], label_map=str(lm),
                              output_dir=str(run), pretrained=init, time_budget_min=f_minutes, eval_every=0, **overrides)
        result = train(config)
        last = result.history[-1]
        summary[f"F_from_{name}"] = {"steps": result.step, "mAP50": last["mAP50"], "mAP": last.get("mAP"),
                                     "AP50_per_class": last["per_class_AP50"]}
        print(name, json.dumps(summary[f"F_from_{name}"]), flush=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))


def main(argv) -> None:
    import argparse

    from mask_od.config import parse_key_values

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["ship", "pfv", "pfv2"])
    p.add_argument("--minutes", type=float, default=60.0, help="ship: training budget")
    p.add_argument("--run", default="run", help="ship: the run folder's name under benchmarks/results/ship/ (e.g. run_ft320 "
                   "for a fine-tune at 320 with init_checkpoint=benchmarks/results/ship/run)")
    p.add_argument("--p_minutes", type=float, default=30.0, help="pfv: budget of the model trained on P")
    p.add_argument("--f_minutes", type=float, default=10.0, help="pfv: budget of each fine-tune on F")
    p.add_argument("--f_images", type=int, default=40, help="pfv: photos in F")
    p.add_argument("overrides", nargs="*", help="key=value config overrides")
    a = p.parse_args(argv)
    assert ROOT.is_dir()
    if a.what == "ship":
        ship(a.minutes, parse_key_values(a.overrides), a.run)
    elif a.what == "pfv2":
        pfv2(a.p_minutes, a.f_minutes, a.f_images, parse_key_values(a.overrides))
    else:
        pfv(a.p_minutes, a.f_minutes, a.f_images, parse_key_values(a.overrides))


if __name__ == "__main__":
    main(sys.argv[1:])
