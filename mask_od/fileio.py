"""Safe writing of user files and folders: refuse what exists unless asked, write under a temporary sibling name,
rename into place when complete (a folder is swapped), so a failure never leaves half a file or loses the old one."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterator


def refuse_existing(path: Path | str, overwrite: bool) -> None:
    """Raise FileExistsError (the one wording everywhere) when ``path`` exists and ``overwrite`` is False."""
    if Path(path).exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; refusing to overwrite it (pass --overwrite, or overwrite=True in Python)")


def temp_sibling(path: Path | str) -> Path:
    """A hidden unique name beside ``path``, keeping its suffix (writers that choose a format by suffix still can)."""
    path = Path(path)
    return path.with_name(f".{path.stem}.tmp-{uuid.uuid4().hex[:8]}{path.suffix}")


def replace_path(tmp: Path | str, path: Path | str) -> None:
    """Move the finished ``tmp`` to ``path``: one rename for a file; an existing folder is moved aside first and
    deleted only once the new one is in place."""
    tmp, path = Path(tmp), Path(path)
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
    """Yield a temporary sibling of ``path`` (write a file or make a folder there); on success it replaces ``path``,
    on error it is deleted. Raises FileExistsError before anything is written when ``path`` exists and ``overwrite``
    is False."""
    path = Path(path)
    refuse_existing(path, overwrite)
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
