"""label_map.pbtxt in the TF OD API format: read, write, and friendly checks of class names against it."""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from mask_od.errors import MaskODError
from mask_od.fileio import write_text_atomic

DEFAULT_CLASSES = ("with_mask", "without_mask", "mask_weared_incorrect")


class LabelMapError(MaskODError, ValueError):
    """A label map is malformed, or class names do not match it; the message says which file and what to do."""


_TOKEN = re.compile(r"""\s*(?:(#[^\n]*)|(\{)|(\})|(\w+)\s*:\s*("[^"\n]*"|'[^'\n]*'|[^\s{}#]+)|(\w+)|(\S))""")


def _decode(path: Path, data: bytes) -> str:
    """Label-map text: UTF-8 (with or without BOM) or UTF-16 with a BOM (Windows Notepad's "Unicode")."""
    try:
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            return data.decode("utf-16")
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise LabelMapError(f"{path}: not UTF-8 or UTF-16 text ({e.reason} at byte {e.start}); save it as UTF-8") from None


def read_label_map(path: Path | str) -> dict[int, str]:
    """Parse ``label_map.pbtxt`` -> ``{id: name}`` sorted by id. Ids start at 1 (0 is the background).

    A malformed file raises :class:`LabelMapError` with the line: an ``item`` not closed before the next one, a
    stray brace, a field given twice, a missing id or name."""
    path = Path(path)
    if not path.is_file():
        raise LabelMapError(f"{path}: label map not found (make one with mask_od.label_map.write_label_map)")
    text = _decode(path, path.read_bytes())
    line_of = lambda pos: text.count("\n", 0, pos) + 1  # noqa: E731
    items: list[tuple[int, dict[str, str]]] = []
    field_line: dict[tuple[int, str], int] = {}  # (item index, key) -> the line the field is on
    current: dict[str, str] | None = None
    opened = expect_brace = 0
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            break
        pos = m.end()
        comment, lbrace, rbrace, key, value, word, other = m.groups()
        at = line_of(m.start(m.lastindex or 0))
        if comment:
            continue
        if word == "item" and current is None and not expect_brace:
            expect_brace = at
        elif lbrace and expect_brace:
            current, opened, expect_brace = {}, expect_brace, 0
        elif rbrace and current is not None:
            items.append((opened, current))
            current = None
        elif key and current is not None:
            if key in current:
                hint = (f"; is the '}}' closing the item of line {opened} missing?" if key in ("id", "name") else "")
                raise LabelMapError(f"{path}: line {at}: '{key}' given twice in the item opened on line {opened}{hint}")
            current[key] = value.strip("'\"")
            field_line[len(items), key] = at
        elif word == "item" and current is not None:
            raise LabelMapError(f"{path}: line {at}: a new 'item' starts before the '}}' closing the item of line {opened}")
        else:
            raise LabelMapError(f"{path}: line {at}: unexpected {m.group(0).strip()!r}; expected item {{ id: N name: '...' }}")
    if current is not None or expect_brace:
        raise LabelMapError(f"{path}: the item of line {opened or expect_brace} is not closed with '}}'")
    if not items:
        raise LabelMapError(f"{path}: no 'item {{ id: N name: '...' }}' entries found")
    out: dict[int, str] = {}
    for k, (line, fields) in enumerate(items):
        if "id" not in fields or "name" not in fields:
            raise LabelMapError(f"{path}: line {line}: the item needs both 'id' and 'name' (got {sorted(fields)})")
        id_line, name_line = field_line[k, "id"], field_line[k, "name"]
        try:
            idx = int(fields["id"])
        except ValueError:
            raise LabelMapError(f"{path}: line {id_line}: id {fields['id']!r} is not an integer") from None
        if idx < 1:
            raise LabelMapError(f"{path}: line {id_line} ({fields['name']}): id {idx} must be >= 1 (0 is the background)")
        if idx in out:
            raise LabelMapError(f"{path}: line {id_line}: id {idx} is used twice ({out[idx]!r} and {fields['name']!r})")
        if fields["name"] in out.values():
            raise LabelMapError(f"{path}: line {name_line}: name {fields['name']!r} is used twice")
        out[idx] = fields["name"]
    return dict(sorted(out.items()))


def num_classes(label_map: Mapping[int, str]) -> int:
    """Classes the model predicts: the largest id (as the TF OD API sizes its head), so ids with gaps (1, 5, 9) each
    get their own output; ids that no item uses are never trained and never predicted."""
    return max(label_map)


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
    """The label-map name a misspelt class most likely means: the same but for case, spaces and hyphens, else a typo
    (similarity ratio at least 0.9: 'wth_mask', 'withmask' -> 'with_mask'). A word more or less is another class, not
    a typo: 'without_mask' is not offered 'with_mask' (ratio 0.86), which would merge two classes."""
    known = list(known)
    norm = lambda s: re.sub(r"[\s\-_]+", "_", s.strip().lower())  # noqa: E731
    for k in known:
        if norm(k) == norm(name):
            return k
    close = difflib.get_close_matches(norm(name), [norm(k) for k in known], n=1, cutoff=0.9)
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
