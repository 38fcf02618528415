"""Mask_detection.ipynb: thin cells, a parameters cell, and a headless run top to bottom with tiny parameters."""

import json

import pytest
from conftest import ROOT, WEIGHTS

NOTEBOOK = ROOT / "Mask_detection.ipynb"


def code_cells():
    nb = json.loads(NOTEBOOK.read_text())
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def test_cells_are_thin_and_parameters_are_tagged():
    cells = code_cells()
    assert "parameters" in cells[0]["metadata"].get("tags", [])
    for i, c in enumerate(cells):
        src = "".join(c["source"])
        assert "def " not in src and "class " not in src, src[:80]
        assert len(src.splitlines()) <= (25 if i == 0 else 20)  # the parameters cell is a list of settings


@pytest.mark.slow
def test_notebook_runs_top_to_bottom(tmp_path):
    import papermill as pm

    ws = tmp_path / "ws"
    params = dict(WORKSPACE=str(ws), IMAGE_SIZE=128, STEPS=12, BATCH_SIZE=4, NUM_DEMO_IMAGES=16, TFLITE=["float32"],
                  LIVE_FRAMES=6, HEADLESS=True, PRETRAINED=str(WEIGHTS) if WEIGHTS.is_file() else "none")
    out = tmp_path / "executed.ipynb"
    pm.execute_notebook(str(NOTEBOOK), str(out), parameters=params, kernel_name="python3", cwd=str(ROOT), progress_bar=False)
    executed = json.loads(out.read_text())
    errors = [o for c in executed["cells"] if c["cell_type"] == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    images = sum(1 for c in executed["cells"] for o in c.get("outputs", []) if "image/png" in o.get("data", {}))
    assert images >= 6  # dataset report, training curves, evaluation plots, live frame
    assert (ws / "exported-models" / "my_ssd_mobilenet_v2_fpnlite" / "model_float32.tflite").is_file()
    assert (ws / "live.mp4").is_file() and (ws / "live.jsonl").read_text().count("\n") == 6
