"""LabelImg PASCAL VOC XML: safe parsing, validation, images to 8-bit RGB, DataFrame/CSV, and writing back."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from mask_od.errors import MaskODError
from mask_od.fileio import write_text_atomic

# The one image-file rule of every stage (capture, labelling, parsing, partition, live sources): the formats OpenCV
# decodes, matched case-insensitively (IMG_0001.JPG is an image). Records store them as JPEG (re-encoded if needed).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".dib", ".webp", ".tif", ".tiff", ".jp2", ".pbm", ".pgm",
                    ".ppm", ".pnm", ".sr", ".ras")


def is_image_file(path: Path | str) -> bool:
    """True for a file name with an image suffix of :data:`IMAGE_EXTENSIONS` (any case), hidden files excepted."""
    p = Path(path)
    return p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def list_image_files(folder: Path | str, recursive: bool = True) -> list[Path]:
    """Sorted image files of ``folder`` (subfolders too unless ``recursive`` is False; hidden ones left out)."""
    folder = Path(folder)
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if is_image_file(p) and p.is_file() and not _hidden(p, folder))


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)
CSV_COLUMNS = ["filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax"]


class AnnotationError(MaskODError, ValueError):
    """A VOC annotation or its image is unusable; the message names the file and the problem."""


@dataclasses.dataclass
class Annotation:
    """One image's labels. ``boxes_xyxy`` is float ``[N, 4]`` VOC pixels (xmin, ymin, xmax, ymax), clipped to the image."""

    xml_path: Path
    image_path: Path
    width: int
    height: int
    names: list[str]
    boxes_xyxy: np.ndarray
    difficult: list[int]
    truncated: list[int]
    clipped: int = 0  # boxes that stuck out past the edge by a few pixels and were clipped

    @property
    def num_boxes(self) -> int:
        return len(self.names)


def _safe_parser():
    from lxml import etree

    return etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False, huge_tree=False
    )


def _parse_xml_root(xml_path: Path):
    from lxml import etree

    refused = AnnotationError(
        f"{xml_path}: declares XML entities or an external DTD; refused (entity expansion and network access are "
        "off for annotation files). LabelImg never writes these: re-save the file from LabelImg."
    )
    try:
        data = xml_path.read_bytes()
    except OSError as e:
        raise AnnotationError(f"{xml_path}: cannot read ({e})") from None
    if b"<!ENTITY" in data or b"<!entity" in data:
        raise refused
    try:
        tree = etree.ElementTree(etree.fromstring(data, _safe_parser()))
    except etree.XMLSyntaxError as e:
        raise AnnotationError(f"{xml_path}: not well-formed XML ({e})") from None
    info = tree.docinfo
    dtd = info.internalDTD
    if info.system_url or (dtd is not None and (list(dtd.iterentities()) or dtd.system_url)):
        raise refused
    if any(isinstance(el, etree._Entity) for el in tree.iter()):
        raise AnnotationError(f"{xml_path}: contains entity references; refused")
    root = tree.getroot()
    if root.tag != "annotation":
        raise AnnotationError(f"{xml_path}: root element is <{root.tag}>, expected <annotation> (PASCAL VOC)")
    return root


def _same_stem(folder: Path, stem: str) -> list[Path]:
    """Images of ``folder`` named ``stem`` + an image suffix (any case)."""
    import glob

    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(f"{glob.escape(stem)}.*") if p.stem == stem and is_image_file(p) and p.is_file())


def _find_image(xml_path: Path, filename: str | None, image_dir: Path | None) -> Path:
    """The image of an XML file, as LabelImg pairs them: the image of the same stem beside the XML (or in
    ``image_dir``, then ``../images``) first; the ``<filename>`` text only when there is none. A ``<filename>`` naming
    another photo is warned about (naming both); two images of the stem are refused unless ``<filename>`` picks one."""
    from pathlib import PureWindowsPath

    dirs = [d for d in (xml_path.parent, image_dir, xml_path.parent.parent / "images") if d is not None]
    name = PureWindowsPath(filename).name if filename else ""  # Windows paths too (LabelImg on Windows writes them)
    for d in dirs:
        found = _same_stem(d, xml_path.stem)
        if len(found) > 1:
            named = [p for p in found if p.name == name]
            if not named:
                raise AnnotationError(f"{xml_path}: {' and '.join(str(p) for p in found)} share its name; which one it "
                                      f"labels is unclear (<filename> is {filename!r}): rename or remove one")
            found = named
        if found:
            if name and Path(name).stem != xml_path.stem:
                _warn(f"{xml_path}: <filename> says {name} but the image beside it is {found[0].name}; paired with "
                      f"{found[0]} (same name, as LabelImg pairs them); were files renamed after labelling?")
            return found[0]
    if name:
        for d in dirs:
            for candidate in [d / name, *_same_stem(d, Path(name).stem)]:
                if candidate.is_file():
                    return candidate
    raise AnnotationError(
        f"{xml_path}: image not found: no image named {xml_path.stem}.* and <filename> {filename!r} is not there either "
        f"(looked in {', '.join(str(d) for d in dirs)}, any of {', '.join(IMAGE_EXTENSIONS[:5])} …)"
    )


def decode_image_rgb(data: bytes, source: Path | str = "<bytes>") -> np.ndarray:
    """Decode image bytes to uint8 ``[H, W, 3]`` RGB: 16-bit becomes 8-bit, alpha is dropped, gray is expanded."""
    import cv2

    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
    if arr is None or arr.size == 0:
        raise AnnotationError(f"{source}: cannot decode image (corrupt or not an image)")
    if arr.dtype == np.uint16:
        arr = (arr >> 8).astype(np.uint8)
    elif arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.shape[2] == 4:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGB)
    elif arr.shape[2] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    else:
        raise AnnotationError(f"{source}: unsupported number of channels {arr.shape[2]}")
    return np.ascontiguousarray(arr)


def read_image_rgb(path: Path | str) -> np.ndarray:
    """Read an image file as uint8 ``[H, W, 3]`` RGB (see :func:`decode_image_rgb`)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise AnnotationError(f"{path}: cannot read image ({e})") from None
    return decode_image_rgb(data, path)


def _text(el, tag: str) -> str | None:
    child = el.find(tag)
    return child.text.strip() if child is not None and child.text is not None else None


def _number(xml_path: Path, obj, tag: str, index: int) -> float:
    value = _text(obj, f"bndbox/{tag}")
    if value is None:
        raise AnnotationError(f"{xml_path}: object #{index}: <bndbox> has no <{tag}>")
    try:
        number = float(value)
    except ValueError:
        raise AnnotationError(f"{xml_path}: object #{index}: <{tag}> is {value!r}, not a number") from None
    if not math.isfinite(number):
        raise AnnotationError(f"{xml_path}: object #{index}: <{tag}> is {value!r}, not a finite number")
    return number


_FLAGS = {"0": 0, "1": 1, "false": 0, "true": 1, "no": 0, "yes": 1}


def _flag(xml_path: Path, obj, tag: str, index: int) -> int:
    """``<difficult>`` / ``<truncated>``: 0 or 1 as LabelImg writes them (true/false and yes/no accepted)."""
    value = _text(obj, tag)
    if value is None or value == "":
        return 0
    if value.lower() not in _FLAGS:
        raise AnnotationError(f"{xml_path}: object #{index}: <{tag}> is {value!r}; expected 0 or 1")
    return _FLAGS[value.lower()]


def exif_orientation(data: bytes) -> int:
    """The EXIF orientation tag of JPEG bytes (1 = as stored; 0 when there is none or it cannot be read)."""
    import io

    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            return int(im.getexif().get(0x0112, 0) or 0)
    except Exception:  # noqa: BLE001 - an unreadable EXIF block is the same as none
        return 0


def _warn(message: str) -> None:
    import warnings

    from mask_od.errors import DataWarning

    warnings.warn(message, DataWarning, stacklevel=3)


def check_image_agrees(xml_path: Path, root, image_path: Path, data: bytes, width: int, height: int) -> list[str]:
    """Warnings (also issued as :class:`DataWarning`) when ``<size>`` disagrees with the decoded image, or the image
    carries an EXIF rotation. The rule everywhere in mask_od: pixels as stored, EXIF ignored (as LabelImg shows them
    and TensorFlow decodes them for training), so boxes keep the meaning LabelImg gave them."""
    out = []
    w, h = _text(root, "size/width"), _text(root, "size/height")
    try:
        sw, sh = int(float(w)), int(float(h))
    except (TypeError, ValueError):
        sw = sh = None
    if sw and sh and (sw, sh) != (width, height):
        out.append(f"{xml_path}: <size> says {sw}x{sh} but {image_path.name} is {width}x{height}; the boxes are read "
                   "in the image's pixels (was the image resized or replaced after labelling?)")
    orientation = exif_orientation(data) if image_path.suffix.lower() in (".jpg", ".jpeg") else 0
    if orientation > 1:
        out.append(f"{image_path}: EXIF orientation {orientation} (photo viewers show it rotated or flipped); mask_od "
                   "uses the pixels as stored, as LabelImg does: boxes drawn in a viewer that rotates it land elsewhere")
    for m in out:
        _warn(m)
    return out


def _refuse_normalized(xml_path: Path, root, width: int, height: int) -> None:
    """Raise :class:`AnnotationError` when every box coordinate of the file is <= 1 on a larger image: the tool that
    wrote it saved fractions of the image (normalized, as YOLO and TF records do), not the pixels VOC XML holds."""
    boxes = []
    for box in root.iterfind("object/bndbox"):
        try:
            boxes.append([abs(float((box.findtext(tag) or "").strip())) for tag in ("xmin", "ymin", "xmax", "ymax")])
        except ValueError:
            return  # reported per object, with its index
    values = [v for b in boxes for v in b]
    if values and max(values) <= 1.0 and max(width, height) > 2:
        raise AnnotationError(
            f"{xml_path}: all {len(values)} box coordinates are <= 1 (first box xmin, ymin, xmax, ymax {boxes[0]}) on a "
            f"{width}x{height} "
            "image: they look normalized (fractions of the image); PASCAL VOC XML holds pixels: multiply x by the "
            "width and y by the height, or re-save the labels from LabelImg")


def load_voc_example(
    xml_path: Path | str, image_dir: Path | str | None = None, edge_tolerance_px: float = 5.0
) -> tuple[Annotation, np.ndarray]:
    """Parse one VOC XML file and decode its image; returns (annotation, uint8 ``[H, W, 3]`` RGB).

    Boxes up to ``edge_tolerance_px`` past the edge are clipped (counted in ``Annotation.clipped``); zero-area,
    inverted, far-outside and 1-px boxes, normalized coordinates (all <= 1), a missing or undecodable image raise
    :class:`AnnotationError` naming the file and the object index (0-based).
    """
    xml_path = Path(xml_path)
    root = _parse_xml_root(xml_path)
    image_path = _find_image(xml_path, _text(root, "filename"), Path(image_dir) if image_dir else None)
    try:
        data = image_path.read_bytes()
    except OSError as e:
        raise AnnotationError(f"{image_path}: cannot read image ({e})") from None
    image = decode_image_rgb(data, image_path)
    height, width = image.shape[:2]
    check_image_agrees(xml_path, root, image_path, data, width, height)
    _refuse_normalized(xml_path, root, width, height)
    names, boxes, difficult, truncated, clipped = [], [], [], [], 0
    for i, obj in enumerate(root.findall("object")):
        name = _text(obj, "name")
        if not name:
            raise AnnotationError(f"{xml_path}: object #{i}: missing <name>")
        if obj.find("bndbox") is None:
            raise AnnotationError(f"{xml_path}: object #{i} ({name}): missing <bndbox>")
        x0, y0, x1, y1 = (_number(xml_path, obj, t, i) for t in ("xmin", "ymin", "xmax", "ymax"))
        if x1 <= x0 or y1 <= y0:
            kind = "zero-area" if (x1 == x0 or y1 == y0) else "inverted"
            raise AnnotationError(
                f"{xml_path}: object #{i} ({name}): {kind} box xmin={x0:g} ymin={y0:g} xmax={x1:g} ymax={y1:g}"
            )
        out = max(-x0, -y0, x1 - width, y1 - height)
        if out > edge_tolerance_px:
            raise AnnotationError(
                f"{xml_path}: object #{i} ({name}): box ({x0:g},{y0:g},{x1:g},{y1:g}) lies {out:g} px outside the "
                f"{width}x{height} image (tolerance {edge_tolerance_px:g} px)"
            )
        if out > 0:
            clipped += 1
            x0, x1 = np.clip([x0, x1], 0, width)
            y0, y1 = np.clip([y0, y1], 0, height)
            if x1 <= x0 or y1 <= y0:
                raise AnnotationError(f"{xml_path}: object #{i} ({name}): box is empty once clipped to the image")
        if x1 - x0 <= 1 or y1 - y0 <= 1:
            raise AnnotationError(f"{xml_path}: object #{i} ({name}): box ({x0:g},{y0:g},{x1:g},{y1:g}) is only "
                                  f"{x1 - x0:g} x {y1 - y0:g} px (a box must be more than 1 px wide and high)")
        names.append(name)
        boxes.append((x0, y0, x1, y1))
        difficult.append(_flag(xml_path, obj, "difficult", i))
        truncated.append(_flag(xml_path, obj, "truncated", i))
    ann = Annotation(
        xml_path=xml_path,
        image_path=image_path,
        width=width,
        height=height,
        names=names,
        boxes_xyxy=np.asarray(boxes, np.float64).reshape(-1, 4),
        difficult=difficult,
        truncated=truncated,
        clipped=clipped,
    )
    return ann, image


def parse_voc_xml(xml_path: Path | str, image_dir: Path | str | None = None, edge_tolerance_px: float = 5.0) -> Annotation:
    """Parse and validate one VOC XML file (its image is decoded to check it, then dropped)."""
    return load_voc_example(xml_path, image_dir, edge_tolerance_px)[0]


def list_xml_files(xml_dir: Path | str, exclude: Sequence[Path | str] = ()) -> list[Path]:
    """Sorted ``.xml`` files of a folder and its subfolders (capture writes one per label), hidden ones and those under
    ``exclude`` (e.g. the train/ and test/ copies an earlier split wrote there) left out; a clear error when there
    are none."""
    xml_dir = Path(xml_dir)
    if not xml_dir.is_dir():
        raise AnnotationError(f"{xml_dir}: annotation folder does not exist")
    skip = [Path(e).resolve() for e in exclude]
    files = sorted(p for p in xml_dir.rglob("*") if p.suffix.lower() == ".xml" and p.is_file() and not _hidden(p, xml_dir)
                   and not any(d in p.resolve().parents for d in skip))
    if not files:
        raise AnnotationError(f"{xml_dir}: no .xml annotation files found, subfolders included (LabelImg saves PASCAL "
                              "VOC .xml)")
    return files


@dataclasses.dataclass
class Unpaired:
    """Images no annotation pairs with, and files that hold VOC XML without the ``.xml`` suffix (LabelImg writes those
    when a name is typed without it): both left out of the dataset."""

    images: list[Path]
    no_suffix: list[Path]

    def message(self, few: int = 3) -> str:
        """One line with the counts and a few names; "" when nothing was left out."""
        parts = []
        if self.images:
            parts.append(f"{len(self.images)} image(s) without annotation (no XML of the same name), skipped: "
                         + ", ".join(p.name for p in self.images[:few]) + (" …" if len(self.images) > few else ""))
        if self.no_suffix:
            parts.append(f"{len(self.no_suffix)} annotation(s) without the .xml suffix, not read (rename them to "
                         "NAME.xml): " + ", ".join(p.name for p in self.no_suffix[:few]) + (" …" if len(self.no_suffix) > few else ""))
        return "; ".join(parts)


def find_unpaired(folders: Sequence[Path | str | None], annotations: Sequence[Annotation],
                  exclude: Sequence[Path | str] = ()) -> Unpaired:
    """What of ``folders`` (subfolders too, but not those under ``exclude``) no annotation uses: images no XML is
    paired with, and VOC XML files lacking the ``.xml`` suffix. Negatives are not counted: an XML without objects
    pairs its image."""
    used = {a.image_path.resolve() for a in annotations}
    skip = [Path(e).resolve() for e in exclude]
    images, no_suffix, seen = [], [], set()
    for folder in dict.fromkeys(Path(f) for f in folders if f):
        if not folder.is_dir():
            continue
        for p in sorted(folder.rglob("*")):
            if p in seen or not p.is_file() or _hidden(p, folder) or any(d in p.resolve().parents for d in skip):
                continue
            seen.add(p)
            if is_image_file(p):
                if p.resolve() not in used:
                    images.append(p)
            elif p.suffix.lower() != ".xml" and _looks_like_voc(p):
                no_suffix.append(p)
    return Unpaired(images, no_suffix)


def _looks_like_voc(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return False
    return b"<annotation" in head


def parse_voc_files(files: Sequence[Path], image_dir: Path | str | None = None, edge_tolerance_px: float = 5.0,
                    progress: bool = False) -> tuple[list[Annotation], list[str]]:
    """:func:`parse_voc_xml` of each file: (the annotations of the good files, one message per bad file)."""
    out, errors = [], []
    it: Iterable[Path] = files
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(files, desc="annotations", unit="file")
    for f in it:
        try:
            out.append(parse_voc_xml(f, image_dir, edge_tolerance_px))
        except AnnotationError as e:
            errors.append(str(e))
    return out, errors


def unusable(errors: Sequence[str], num_files: int) -> AnnotationError:
    """One error listing every bad annotation file (``errors``: one message each) out of ``num_files``."""
    return AnnotationError(f"{len(errors)} of {num_files} annotation files are unusable:\n  " + "\n  ".join(errors))


def parse_voc_dir(
    xml_dir: Path | str, image_dir: Path | str | None = None, edge_tolerance_px: float = 5.0, progress: bool = False,
    exclude: Sequence[Path | str] = (),
) -> list[Annotation]:
    """Parse every XML file of a folder and its subfolders (see :func:`list_xml_files`). All bad files are collected
    and reported together in one error; so are two XML files paired with one image. Images no XML pairs with and
    annotations saved without the ``.xml`` suffix are counted in one :class:`DataWarning` line naming a few."""
    files = list_xml_files(xml_dir, exclude)
    out, errors = parse_voc_files(files, image_dir, edge_tolerance_px, progress)
    by_image: dict[Path, Path] = {}
    for a in out:  # one image, one annotation: two XML files claiming one photo would write it twice
        first = by_image.setdefault(a.image_path.resolve(), a.xml_path)
        if first != a.xml_path:
            errors.append(f"{a.xml_path}: pairs with {a.image_path}, which {first} labels already; one image is "
                          "written once: remove or rename one of the two XML files")
    if errors:
        raise unusable(errors, len(files))
    unpaired = find_unpaired([xml_dir, image_dir], out, exclude)
    if unpaired.message():
        _warn(f"{Path(xml_dir)}: {unpaired.message()}")
    return out


def annotations_to_dataframe(annotations: Sequence[Annotation]):
    """One row per box with the TF OD API tutorial's xml_to_csv columns (filename, width, height, class, x/y min/max)."""
    import pandas as pd

    rows = [
        (a.image_path.name, a.width, a.height, name, *(int(round(v)) for v in box))
        for a in annotations
        for name, box in zip(a.names, a.boxes_xyxy)
    ]
    return pd.DataFrame(rows, columns=CSV_COLUMNS)


def write_csv(annotations: Sequence[Annotation], csv_path: Path | str, overwrite: bool = False) -> Path:
    """Write the xml_to_csv table atomically; returns the path."""
    return write_text_atomic(csv_path, annotations_to_dataframe(annotations).to_csv(index=False), overwrite=overwrite)


def voc_xml_string(
    filename: str, width: int, height: int, names: Sequence[str], boxes_xyxy: np.ndarray, folder: str = "images"
) -> str:
    """LabelImg-style VOC XML for one image (boxes are pixel xyxy, written as integers)."""
    from lxml import etree

    root = etree.Element("annotation")
    etree.SubElement(root, "folder").text = folder
    etree.SubElement(root, "filename").text = filename
    size = etree.SubElement(root, "size")
    for tag, v in (("width", width), ("height", height), ("depth", 3)):
        etree.SubElement(size, tag).text = str(int(v))
    etree.SubElement(root, "segmented").text = "0"
    for name, box in zip(names, np.asarray(boxes_xyxy).reshape(-1, 4)):
        obj = etree.SubElement(root, "object")
        etree.SubElement(obj, "name").text = name
        etree.SubElement(obj, "pose").text = "Unspecified"
        etree.SubElement(obj, "truncated").text = "0"
        etree.SubElement(obj, "difficult").text = "0"
        bb = etree.SubElement(obj, "bndbox")
        for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), box):
            etree.SubElement(bb, tag).text = str(int(round(float(v))))
    return etree.tostring(root, pretty_print=True, encoding="unicode")


def write_voc_xml(annotation: Annotation, xml_path: Path | str, overwrite: bool = False) -> Path:
    """Write an :class:`Annotation` as LabelImg VOC XML (atomic; refuses to replace a file unless ``overwrite``)."""
    text = voc_xml_string(
        annotation.image_path.name, annotation.width, annotation.height, annotation.names, annotation.boxes_xyxy
    )
    return write_text_atomic(xml_path, text, overwrite=overwrite)
