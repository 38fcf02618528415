"""label_map.pbtxt in the TF OD API format: read, write, and friendly checks of class names against it."""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from mask_od.fileio import write_text_atomic

DEFAULT_CLASSES = ("with_mask", "without_mask", "mask_weared_incorrect")


class LabelMapError(ValueError):
    """A label map is malformed, or class names do not match it; the message says which file and what to do."""


_ITEM = re.compile(r"item\s*\{(.*?)\}", re.S)
_FIELD = re.compile(r"(\w+)\s*:\s*(\"[^\"]*\"|'[^']*'|[^\s}]+)")


def read_label_map(path: Path | str) -> dict[int, str]:
    """Parse ``label_map.pbtxt`` -> ``{id: name}`` sorted by id. Ids start at 1 (0 is the background)."""
    path = Path(path)
    if not path.is_file():
        raise LabelMapError(f"{path}: label map not found (make one with mask_od.label_map.write_label_map)")
    text = re.sub(r"#[^\n]*", "", path.read_text(encoding="utf-8"))
    items = _ITEM.findall(text)
    if not items:
        raise LabelMapError(f"{path}: no 'item {{ id: N name: '...' }}' entries found")
    out: dict[int, str] = {}
    for k, body in enumerate(items):
        fields = {key: val.strip("'\"") for key, val in _FIELD.findall(body)}
        if "id" not in fields or "name" not in fields:
            raise LabelMapError(f"{path}: item #{k} needs both 'id' and 'name' (got {sorted(fields)})")
        try:
            idx = int(fields["id"])
        except ValueError:
            raise LabelMapError(f"{path}: item #{k}: id {fields['id']!r} is not an integer") from None
        if idx < 1:
            raise LabelMapError(f"{path}: item #{k} ({fields['name']}): id {idx} must be >= 1 (0 is the background)")
        if idx in out:
            raise LabelMapError(f"{path}: id {idx} is used twice ({out[idx]!r} and {fields['name']!r})")
        if fields["name"] in out.values():
            raise LabelMapError(f"{path}: name {fields['name']!r} is used twice")
        out[idx] = fields["name"]
    return dict(sorted(out.items()))


def label_map_string(classes: Mapping[int, str] | Sequence[str]) -> str:
    """The pbtxt text for ``{id: name}`` or a list of names (ids 1..N in order)."""
    items = classes.items() if isinstance(classes, Mapping) else enumerate(classes, start=1)
    return "".join(f"item {{\n    id: {i}\n    name: '{n}'\n}}\n" for i, n in sorted(items))


def write_label_map(classes: Mapping[int, str] | Sequence[str], path: Path | str, overwrite: bool = False) -> Path:
    """Write ``label_map.pbtxt`` atomically; returns the path."""
    return write_text_atomic(path, label_map_string(classes), overwrite=overwrite)


def name_to_id(label_map: Mapping[int, str]) -> dict[str, int]:
    return {n: i for i, n in label_map.items()}


def suggest_name(name: str, known: Iterable[str]) -> str | None:
    """The label-map name a misspelt class most likely means (case, spaces, hyphens, then fuzzy match)."""
    known = list(known)
    norm = lambda s: re.sub(r"[\s\-_]+", "_", s.strip().lower())  # noqa: E731
    for k in known:
        if norm(k) == norm(name):
            return k
    close = difflib.get_close_matches(norm(name), [norm(k) for k in known], n=1, cutoff=0.6)
    return next((k for k in known if norm(k) == close[0]), None) if close else None


def validate_names(
    names_by_file: Mapping[Path | str, Iterable[str]], label_map: Mapping[int, str], label_map_path: Path | str = ""
) -> None:
    """Raise :class:`LabelMapError` listing every file whose class names are missing from the label map."""
    known = set(label_map.values())
    bad: dict[str, list[str]] = {}
    for f, names in names_by_file.items():
        for n in names:
            if n not in known:
                bad.setdefault(n, []).append(str(f))
    if not bad:
        return
    lines = []
    for name, files in sorted(bad.items()):
        hint = suggest_name(name, known)
        hint_txt = f" (did you mean {hint!r}?)" if hint else ""
        shown = ", ".join(sorted(set(files))[:20]) + (" ..." if len(set(files)) > 20 else "")
        lines.append(f"class {name!r}{hint_txt} in {len(set(files))} file(s): {shown}")
    where = f" {label_map_path}" if label_map_path else ""
    raise LabelMapError(
        f"class names not in the label map{where} (known: {', '.join(sorted(known))}):\n  "
        + "\n  ".join(lines)
        + "\nFix the names in LabelImg (or the XML files), or add the classes to the label map."
    )
