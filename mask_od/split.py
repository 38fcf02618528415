"""Seeded train/test(/val) split stratified by class; copies or lists files, never moves or deletes them."""

from __future__ import annotations

import collections
import dataclasses
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np

from mask_od.annotations import Annotation


@dataclasses.dataclass
class Split:
    """Annotations per partition (``val`` may be empty)."""

    train: list[Annotation]
    test: list[Annotation]
    val: list[Annotation] = dataclasses.field(default_factory=list)

    def parts(self) -> dict[str, list[Annotation]]:
        return {k: v for k, v in (("train", self.train), ("test", self.test), ("val", self.val)) if v}


def split_annotations(
    annotations: Sequence[Annotation], test_ratio: float = 0.2, val_ratio: float = 0.0, seed: int = 0
) -> Split:
    """Split images so that each class keeps about the same share in every partition.

    Each image is grouped by the rarest class it contains (images without boxes form their own group); every group is
    shuffled with ``seed`` and cut by the ratios. The same inputs and seed always give the same split.
    """
    if not 0 < test_ratio < 1 or not 0 <= val_ratio < 1 or test_ratio + val_ratio >= 1:
        raise ValueError(f"ratios must satisfy 0 < test, 0 <= val, test + val < 1; got test={test_ratio} val={val_ratio}")
    counts = collections.Counter(n for a in annotations for n in a.names)
    groups: dict[str, list[Annotation]] = collections.defaultdict(list)
    for a in sorted(annotations, key=lambda a: str(a.xml_path)):
        key = min(set(a.names), key=lambda n: (counts[n], n)) if a.names else ""
        groups[key].append(a)
    rng = np.random.default_rng(seed)
    out = Split([], [], [])
    for key in sorted(groups):
        items = groups[key]
        order = rng.permutation(len(items))
        n_test = int(round(len(items) * test_ratio))
        n_val = int(round(len(items) * val_ratio))
        out.test += [items[i] for i in order[:n_test]]
        out.val += [items[i] for i in order[n_test : n_test + n_val]]
        out.train += [items[i] for i in order[n_test + n_val :]]
    for part in (out.train, out.test, out.val):
        part.sort(key=lambda a: str(a.xml_path))
    if not out.test or not out.train:
        empty = "test" if not out.test else "train"
        raise ValueError(f"{len(annotations)} images split at test ratio {test_ratio:g} leave the {empty} part empty "
                         f"(each class is split apart: {dict(counts)}); label more images or change the ratio")
    return out


def write_split(split: Split, out_dir: Path | str, copy: bool = True, overwrite: bool = False) -> dict[str, Path]:
    """Write ``out_dir/<part>.txt`` (one XML path per line) and, with ``copy``, copy each image and its XML into
    ``out_dir/<part>/`` as the TF OD API tutorial's partition_dataset.py does.

    ``out_dir/train``, ``test`` and ``val`` must be empty: copies of an earlier split left there would put test images
    in train. ``overwrite`` clears those folders first (they hold copies), unless a source image lies inside one."""
    import os

    out_dir = Path(out_dir)
    written = {}
    if copy:
        parts = [out_dir / p for p in ("train", "test", "val")]
        used = [d for d in parts if d.is_dir() and any(d.iterdir())]
        if used and not overwrite:
            raise FileExistsError(f"{', '.join(str(d) for d in used)} already hold(s) files of an earlier split: refusing to "
                                  "mix two splits (a test image in train inflates every metric); pass --overwrite to clear "
                                  "train/, test/ and val/ first, or choose another output folder")
        sources = {Path(os.path.abspath(f)).parent for anns in split.parts().values() for a in anns for f in (a.image_path, a.xml_path)}
        for d in used:
            inside = [src for src in sources if src == d.absolute() or d.absolute() in src.parents]
            if inside:
                raise FileExistsError(f"{d} holds the source files ({inside[0]}); refusing to clear it; choose another output folder")
            shutil.rmtree(d)
    for part, anns in split.parts().items():
        lst = out_dir / f"{part}.txt"
        from mask_od.fileio import write_text_atomic

        write_text_atomic(lst, "".join(f"{a.xml_path}\n" for a in anns), overwrite=True)
        written[part] = lst
        if copy:
            d = out_dir / part
            d.mkdir(parents=True, exist_ok=True)
            for a in anns:
                for src in (a.image_path, a.xml_path):
                    dst = d / src.name
                    if dst.exists():
                        if dst.stat().st_size != src.stat().st_size:
                            raise FileExistsError(f"{dst} exists and differs from {src}; refusing to overwrite it")
                        continue
                    shutil.copy2(src, dst)
            written[f"{part}_dir"] = d
    return written
