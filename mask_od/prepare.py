"""The whole data stage in one call: validate VOC labels, report, split, label map, TFRecords (workspace layout)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Sequence

from mask_od.annotations import Annotation, parse_voc_dir
from mask_od.fileio import write_text_atomic
from mask_od.label_map import read_label_map, validate_names, write_label_map
from mask_od.report import dataset_report, plot_dataset_report
from mask_od.split import split_annotations, write_split
from mask_od.tfrecord import write_tfrecords


@dataclasses.dataclass
class PreparedData:
    label_map: Path
    records: dict[str, list[Path]]  # part -> TFRecord files
    report: dict
    figures: dict[str, Path]
    split_lists: dict[str, Path]

    @property
    def train_records(self) -> str:
        return str(self.records["train"][0])

    @property
    def test_records(self) -> str:
        return str(self.records["test"][0])


def prepare_dataset(xml_dir: Path | str, workspace: Path | str = "workspace", image_dir: Path | str | None = None,
                    label_map: Path | str | None = None, test_ratio: float = 0.2, val_ratio: float = 0.0, seed: int = 0,
                    copy_images: bool = False, overwrite: bool = False, progress: bool = True,
                    annotations: Sequence[Annotation] | None = None, plot: bool = True) -> PreparedData:
    """Parse and check every annotation (all problems reported at once), write the dataset report figures to
    ``workspace/annotations``, split (seeded, stratified), write ``label_map.pbtxt`` (classes sorted by frequency unless
    ``label_map`` is given) and ``train.record`` / ``test.record`` (/ ``val.record``). User files are only read.
    ``annotations`` already parsed from ``xml_dir`` are used as they are; ``plot=False`` skips the report figures
    (the notebook has shown them already)."""
    ws = Path(workspace)
    ann_dir = ws / "annotations"
    anns = list(annotations) if annotations is not None else parse_voc_dir(xml_dir, image_dir, progress=progress)
    rep = dataset_report(anns)
    if label_map is None:
        lm_path = ann_dir / "label_map.pbtxt"
        names = list(rep["boxes_per_class"])
        if lm_path.exists() and not overwrite:
            lm = read_label_map(lm_path)
        else:
            lm = dict(enumerate(names, start=1))
            write_label_map(lm, lm_path, overwrite=overwrite)
    else:
        lm_path = Path(label_map)
        lm = read_label_map(lm_path)
    validate_names({a.xml_path: a.names for a in anns}, lm, lm_path)
    figures = plot_dataset_report(anns, ann_dir, {n: i for i, n in lm.items()}, seed=seed) if plot else {}
    split = split_annotations(anns, test_ratio, val_ratio, seed)
    lists = write_split(split, ws / "images", copy=copy_images, overwrite=overwrite)
    records = {}
    for part, items in split.parts().items():
        res = write_tfrecords(items, lm, ann_dir / f"{part}.record", overwrite=overwrite, progress=progress)
        records[part] = res.paths
    rep["split"] = {k: len(v) for k, v in split.parts().items()}
    write_text_atomic(ann_dir / "dataset_report.json", json.dumps(rep, indent=1), overwrite=True)
    return PreparedData(lm_path, records, rep, figures, lists)
