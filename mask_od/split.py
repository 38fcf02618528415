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


def check_ratios(test_ratio: float, val_ratio: float = 0.0) -> None:
    """Raises ValueError unless 0 < ``test_ratio``, 0 <= ``val_ratio`` and their sum < 1 (shares of the images)."""
    if not 0 < test_ratio < 1 or not 0 <= val_ratio < 1 or test_ratio + val_ratio >= 1:
        raise ValueError(f"ratios must satisfy 0 < test, 0 <= val, test + val < 1; got test={test_ratio} val={val_ratio}")


def split_annotations(
    annotations: Sequence[Annotation], test_ratio: float = 0.2, val_ratio: float = 0.0, seed: int = 0
) -> Split:
    """Split images so that each class keeps about the same share in every partition.

    Each image is grouped by the rarest class it contains (images without boxes form their own group); every group is
    shuffled with ``seed`` and cut by the ratios. The same inputs and seed always give the same split.
    """
    check_ratios(test_ratio, val_ratio)
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


MANIFEST = ".mask_od_split.json"  # in the output folder: every file a split wrote there, with its sha256
OS_FILES = {".DS_Store", "Thumbs.db", "desktop.ini"}  # left by file browsers: neither removed nor in the way


def _sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_manifest(out_dir: Path) -> dict[str, str]:
    import json

    try:
        return dict(json.loads((out_dir / MANIFEST).read_text(encoding="utf-8"))["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _clear_earlier_split(out_dir: Path, split: Split, overwrite: bool) -> None:
    """Make ``out_dir/train``, ``test`` and ``val`` empty of split files, or refuse before anything is removed: only
    files that an earlier split wrote there (listed in :data:`MANIFEST`, unchanged since) are ever removed, and only
    with ``overwrite``; any other file (photos sorted by hand, a label corrected in the copy) stops the split."""
    import os

    manifest = _read_manifest(out_dir)
    existing = [f for d in (out_dir / p for p in ("train", "test", "val")) if d.is_dir()
                for f in sorted(d.rglob("*")) if (f.is_file() or f.is_symlink()) and f.name not in OS_FILES]
    if not existing:
        return
    ours, foreign, changed = [], [], []
    for f in existing:
        rel = f.relative_to(out_dir).as_posix()
        (ours if manifest.get(rel) == _sha256(f) else changed if rel in manifest else foreign).append(f)
    dirs = sorted({str(out_dir / f.relative_to(out_dir).parts[0]) for f in existing})
    if foreign or changed:
        named = lambda fs: ", ".join(str(f.relative_to(out_dir)) for f in fs[:5]) + (" ..." if len(fs) > 5 else "")  # noqa: E731
        what = []
        if foreign:
            what.append(f"{len(foreign)} file(s) that mask_od did not write ({named(foreign)})")
        if changed:
            what.append(f"{len(changed)} file(s) of an earlier split changed since ({named(changed)})")
        raise FileExistsError(f"{', '.join(dirs)} hold(s) {' and '.join(what)}: refusing to split into them, with or "
                              "without --overwrite (it removes only unchanged files that mask_od's split wrote, listed in "
                              f"{out_dir / MANIFEST}). A split made by hand (images/train and images/test) is used as it is "
                              "(generate_tfrecord.py -x DIR/train ...); otherwise choose another output folder")
    if not overwrite:
        raise FileExistsError(f"{', '.join(dirs)} already hold(s) the {len(ours)} files of an earlier split made by mask_od: "
                              "refusing to mix two splits (a test image in train inflates every metric); pass --overwrite "
                              "to remove those files first, or choose another output folder")
    sources = {Path(os.path.abspath(f)) for anns in split.parts().values() for a in anns for f in (a.image_path, a.xml_path)}
    inside = sorted(src for src in sources if any(src == Path(os.path.abspath(f)) for f in ours))
    if inside:
        raise FileExistsError(f"{inside[0].parent} holds the source files ({inside[0]}); refusing to clear it; choose "
                              "another output folder")
    for f in ours:
        f.unlink()
    for d in sorted({f.parent for f in ours}, key=lambda d: -len(d.parts)):
        if d != out_dir and not any(d.iterdir()):
            d.rmdir()


def _refuse_before_writing(split: Split, out_dir: Path, copy: bool) -> None:
    """What would stop :func:`write_split` halfway, found before it writes anything: a file where the output folder or
    a part's folder goes, a folder where one of its files goes, and two source files of one name with other bytes bound
    for one folder."""
    import filecmp

    from mask_od.fileio import OutputPathError, refuse_file_in_path

    refuse_file_in_path(out_dir)
    for part in split.parts() if copy else ():
        refuse_file_in_path(out_dir / part)
    planned: dict[Path, Path] = {}
    targets = [out_dir / MANIFEST, *(out_dir / f"{part}.txt" for part in split.parts())]
    for part, anns in split.parts().items() if copy else ():
        for src in (p for a in anns for p in (a.image_path, a.xml_path)):
            dst = out_dir / part / src.name
            first = planned.setdefault(dst, src)
            if first != src and not filecmp.cmp(first, src, shallow=False):
                raise FileExistsError(f"{first} and {src} would both be copied to {dst} with other bytes (two source files "
                                      f"named {src.name}); rename one; nothing was written")
            targets.append(dst)
    if folders := [t for t in targets if t.is_dir()]:
        raise OutputPathError(f"{folders[0]} is a folder where the split writes a file"
                              + (f" (and {len(folders) - 1} more)" if len(folders) > 1 else "") + "; move it away; nothing was written")


def write_split(split: Split, out_dir: Path | str, copy: bool = True, overwrite: bool = False) -> dict[str, Path]:
    """Write ``out_dir/<part>.txt`` (one XML path per line) and, with ``copy``, copy each image and its XML into
    ``out_dir/<part>/`` as the TF OD API tutorial's partition_dataset.py does; every file written is listed with its
    sha256 in ``out_dir/.mask_od_split.json``.

    ``out_dir/train``, ``test`` and ``val`` must hold no split files: copies of an earlier split left there would put
    test images in train. ``overwrite`` removes the files an earlier split wrote (as listed, unchanged), never any
    other file: folders holding others are refused (:func:`_clear_earlier_split`). Source files named alike with the
    same bytes are copied once, and one line says how many; named alike with other bytes, refused."""
    import filecmp
    import json

    from mask_od.fileio import write_text_atomic

    out_dir = Path(out_dir)
    _refuse_before_writing(split, out_dir, copy)
    written: dict[str, Path] = {}
    if copy:
        _clear_earlier_split(out_dir, split, overwrite)
    files = {} if copy else _read_manifest(out_dir)  # without copies, an earlier split's copies stay listed
    same = 0
    for part, anns in split.parts().items():
        lst = out_dir / f"{part}.txt"
        write_text_atomic(lst, "".join(f"{a.xml_path}\n" for a in anns), overwrite=True)
        written[part] = lst
        files[lst.name] = _sha256(lst)
        if copy:
            d = out_dir / part
            d.mkdir(parents=True, exist_ok=True)
            for a in anns:
                for src in (a.image_path, a.xml_path):
                    dst = d / src.name
                    if dst.exists():
                        if not filecmp.cmp(src, dst, shallow=False):
                            raise FileExistsError(f"{dst} exists and differs from {src} (two source files named "
                                                  f"{src.name}?); refusing to overwrite it")
                        same += 1
                        continue
                    shutil.copy2(src, dst)
                    files[dst.relative_to(out_dir).as_posix()] = _sha256(dst)
            written[f"{part}_dir"] = d
    if same:
        print(f"split: {same} file(s) not copied again: a file of the same name and bytes was already copied there")
    write_text_atomic(out_dir / MANIFEST, json.dumps({"files": files}, indent=0), overwrite=True)
    return written
