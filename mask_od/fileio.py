"""Safe writing of user files and folders: refuse what exists unless asked, write under a temporary sibling name,
rename into place when complete (a folder is swapped), so a failure never leaves half a file or loses the old one."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterable, Iterator, Mapping

from mask_od.errors import MaskODError


class OutputOnInputError(MaskODError, ValueError):
    """An output path is one of the inputs (or a folder holding one), or two outputs are one path."""


class OutputPathError(MaskODError, ValueError):
    """An output path that cannot be made: a part of it that should be a folder is a file."""


def refuse_file_in_path(path: Path | str) -> None:
    """Raise :class:`OutputPathError` when a folder ``path`` needs (it, or one above it) is an existing file."""
    for folder in [Path(path), *Path(path).parents]:
        if folder.exists():
            if not folder.is_dir():
                where = "" if folder == Path(path) else f"{path}: "
                raise OutputPathError(f"{where}{folder} is a file, not a folder: give a path in a folder")
            return


def refuse_existing(path: Path | str, overwrite: bool, file: bool = False) -> None:
    """Raise FileExistsError (the one wording everywhere) when ``path`` exists and ``overwrite`` is False; with
    ``file`` (a file is to be written there), :class:`OutputOnInputError` when ``path`` is a folder, overwrite or not,
    and :class:`OutputPathError` when a folder above it is a file."""
    if file:
        refuse_file_in_path(Path(path).parent)
    if file and Path(path).is_dir():
        raise OutputOnInputError(f"{path} is a folder: refusing to replace it (and all it holds) by a file, with or "
                                 "without --overwrite; give a file path")
    if Path(path).exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; refusing to overwrite it (pass --overwrite, or overwrite=True in Python)")


def temp_sibling(path: Path | str) -> Path:
    """A hidden unique name beside ``path``, keeping its suffix (writers that choose a format by suffix still can)."""
    path = Path(path)
    return path.with_name(f".{path.stem}.tmp-{uuid.uuid4().hex[:8]}{path.suffix}")


def replace_path(tmp: Path | str, path: Path | str) -> None:
    """Move the finished ``tmp`` to ``path``: one rename for a file; an existing folder is moved aside first and
    deleted only once the new one is in place. A file never replaces a folder (:class:`OutputOnInputError`)."""
    tmp, path = Path(tmp), Path(path)
    if path.is_dir() and not tmp.is_dir():
        raise OutputOnInputError(f"{path} is a folder: refusing to replace it (and all it holds) by a file; give a file "
                                 "path (e.g. with its suffix) or another name")
    if path.is_dir() and not path.is_symlink():
        old = temp_sibling(path.with_name(path.name + ".old"))
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)


def remove_path(path: Path | str) -> None:
    """Delete a temporary file or folder if it is there."""
    p = Path(path)
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    elif p.exists() or p.is_symlink():
        p.unlink()


@contextlib.contextmanager
def atomic_path(path: Path | str, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` (write a file there); on success it replaces ``path``,
    on error it is deleted. Raises FileExistsError before anything is written when ``path`` exists and ``overwrite``
    is False, :class:`OutputOnInputError` when ``path`` is a folder."""
    path = Path(path)
    refuse_existing(path, overwrite, file=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written to the temporary file for {path}")
        replace_path(tmp, path)
    finally:
        remove_path(tmp)


def write_text_atomic(path: Path | str, text: str, overwrite: bool = False) -> Path:
    """Write ``text`` to ``path`` through a temporary file; returns the path."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes_atomic(path: Path | str, data: bytes, overwrite: bool = False) -> Path:
    """Write ``data`` to ``path`` through a temporary file; returns the path."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def _lands_on(out: Path, inp: Path) -> str:
    """How writing ``out`` would destroy ``inp``: "is" (same path or file), "holds" (replacing the folder ``out``
    deletes ``inp`` inside it), or "" (no harm)."""
    o, i = Path(os.path.realpath(out)), Path(os.path.realpath(inp))
    if o == i:
        return "is"
    if o in i.parents:
        return "holds"
    try:
        return "is" if out.exists() and inp.exists() and os.path.samefile(out, inp) else ""
    except OSError:
        return ""


def refuse_outputs_on_inputs(outputs: Mapping[str, Path | str | None], inputs: Iterable[tuple[str, Path | str | None]],
                             replaces: bool = True, inside: bool = False) -> None:
    """Raise :class:`OutputOnInputError`, naming both, when an output path (``{what: path}``, None skipped) is one of
    ``inputs`` (``(what, path)`` pairs: a video, image folder, model, records, label map, image), the same file under
    another name (symlink, hard link), or (``replaces``: the output is replaced as a whole, not written into) a folder
    holding one; with ``inside``, also when it lies inside an input folder (a folder of images being read: the output
    would replace a picture there, or be read as one); or when two outputs are the same path. Checked before anything
    is written, whatever ``overwrite`` says: an output replaces its path, and an input must never be lost."""
    outs = [(w, Path(p)) for w, p in outputs.items() if p is not None and str(p) != ""]
    ins = [(w, Path(p)) for w, p in inputs if p is not None and str(p) != ""]
    for k, (what, out) in enumerate(outs):
        for other, path in outs[k + 1 :]:
            if _lands_on(out, path) == "is":
                raise OutputOnInputError(f"{what} {out} and {other} {path} are the same path: one would replace the other; "
                                         "give them different paths")
        for src, inp in ins:
            how = _lands_on(out, inp)
            if inside and not how and inp.is_dir() and Path(os.path.realpath(inp)) in Path(os.path.realpath(out)).parents:
                raise OutputOnInputError(f"{what} {out} lies inside the {src} {inp}, which is being read: refusing to write "
                                         "there, with or without --overwrite; choose a path outside it")
            if how == "is" or (how and replaces):
                relation = "is" if how == "is" else "is a folder holding"
                raise OutputOnInputError(f"{what} {out} {relation} the {src} {inp}: refusing to write over an input, with "
                                         "or without --overwrite; choose another output path")
