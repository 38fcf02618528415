"""LabelImg PASCAL VOC XML: safe parsing, validation, images to 8-bit RGB, DataFrame/CSV, and writing back."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from mask_od.errors import MaskODError
from mask_od.fileio import write_text_atomic

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".JPG", ".JPEG", ".PNG")
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


def _find_image(xml_path: Path, filename: str | None, image_dir: Path | None) -> Path:
    dirs = [d for d in (image_dir, xml_path.parent, xml_path.parent.parent / "images") if d is not None]
    stems = []
    if filename:
        name = Path(filename).name
        for d in dirs:
            if (d / name).is_file():
                return d / name
        stems.append(Path(name).stem)
    stems.append(xml_path.stem)
    for d in dirs:
        for stem in stems:
            for ext in IMAGE_EXTENSIONS:
                if (d / (stem + ext)).is_file():
                    return d / (stem + ext)
    raise AnnotationError(
        f"{xml_path}: image {filename!r} not found (looked in {', '.join(str(d) for d in dirs)}, "
        f"also under other extensions {', '.join(IMAGE_EXTENSIONS[:4])})"
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
    values = []
    for tag in ("xmin", "ymin", "xmax", "ymax"):
        for el in root.iterfind(f"object/bndbox/{tag}"):
            try:
                values.append(abs(float((el.text or "").strip())))
            except ValueError:
                return  # reported per object, with its index
    if values and max(values) <= 1.0 and max(width, height) > 2:
        raise AnnotationError(
            f"{xml_path}: all {len(values)} box coordinates are <= 1 (first box {values[:4]}) on a {width}x{height} "
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


def list_xml_files(xml_dir: Path | str) -> list[Path]:
    """Sorted ``*.xml`` files of a folder; a clear error when there are none."""
    xml_dir = Path(xml_dir)
    if not xml_dir.is_dir():
        raise AnnotationError(f"{xml_dir}: annotation folder does not exist")
    files = sorted(xml_dir.glob("*.xml"))
    if not files:
        raise AnnotationError(f"{xml_dir}: no .xml annotation files found (LabelImg saves PASCAL VOC .xml)")
    return files


def parse_voc_dir(
    xml_dir: Path | str, image_dir: Path | str | None = None, edge_tolerance_px: float = 5.0, progress: bool = False
) -> list[Annotation]:
    """Parse every XML file of a folder. All bad files are collected and reported together in one error."""
    files = list_xml_files(xml_dir)
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
    if errors:
        raise AnnotationError(f"{len(errors)} of {len(files)} annotation files are unusable:\n  " + "\n  ".join(errors))
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
