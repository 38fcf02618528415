"""Labelling in the notebook (LabelImg crashes on Python >= 3.10): step through a folder of images in
jupyter-bbox-widget, save LabelImg-identical PASCAL VOC XML beside each image, pre-label new images with a detector."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from mask_od.annotations import (
    IMAGE_EXTENSIONS,
    AnnotationError,
    exif_orientation,
    list_image_files,
    load_voc_example,
    read_image_rgb,
)
from mask_od.detections import LIVE, Detections
from mask_od.errors import MaskODError
from mask_od.fileio import write_text_atomic

VocObject = tuple[str, int, int, int, int]  # (name, xmin, ymin, xmax, ymax) integer VOC pixels


class LabelingError(MaskODError, ValueError):
    """A box cannot be saved (unknown class, empty box) or an existing XML cannot be read; nothing was written."""


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def voc_xml_string(image_path: Path | str, width: int, height: int, depth: int, objects: Sequence[VocObject]) -> str:
    """The PASCAL VOC XML LabelImg 1.8.6 writes for an image: the same elements in the same order (folder, filename,
    path, source/database, size, segmented; per object name, pose, truncated, difficult, bndbox), tab indentation,
    integer pixels; ``truncated`` is 1 for a box on the image border, by LabelImg's rule."""
    p = Path(image_path).absolute()
    out = ["<annotation>", f"\t<folder>{_esc(p.parent.name)}</folder>", f"\t<filename>{_esc(p.name)}</filename>",
           f"\t<path>{_esc(str(p))}</path>", "\t<source>", "\t\t<database>Unknown</database>", "\t</source>",
           "\t<size>", f"\t\t<width>{width}</width>", f"\t\t<height>{height}</height>", f"\t\t<depth>{depth}</depth>",
           "\t</size>", "\t<segmented>0</segmented>"]
    for name, x0, y0, x1, y1 in objects:
        truncated = int(y1 == height or y0 == 1 or x1 == width or x0 == 1)
        out += ["\t<object>", f"\t\t<name>{_esc(name)}</name>", "\t\t<pose>Unspecified</pose>",
                f"\t\t<truncated>{truncated}</truncated>", "\t\t<difficult>0</difficult>", "\t\t<bndbox>",
                f"\t\t\t<xmin>{x0}</xmin>", f"\t\t\t<ymin>{y0}</ymin>", f"\t\t\t<xmax>{x1}</xmax>", f"\t\t\t<ymax>{y1}</ymax>",
                "\t\t</bndbox>", "\t</object>"]
    return "\n".join(out + ["</annotation>"]) + "\n"


def widget_to_objects(bboxes: Sequence[Mapping], width: int, height: int, classes: Sequence[str]) -> list[VocObject]:
    """jupyter-bbox-widget boxes (``x``, ``y``, ``width``, ``height`` in image pixels, ``label``) -> integer VOC
    boxes as LabelImg stores them (min clamped to 1, max to the image). Raises :class:`LabelingError` for a class not
    in ``classes`` or a box that is empty or at most 1 px wide or high inside the image."""
    out = []
    for i, b in enumerate(bboxes):
        name = str(b.get("label", ""))
        if name not in classes:
            raise LabelingError(f"box #{i}: class {name!r} is not in the label map ({', '.join(classes)}); pick one of those")
        x0, y0 = float(b["x"]), float(b["y"])
        x1, y1 = x0 + float(b["width"]), y0 + float(b["height"])
        x0, x1 = sorted((x0, x1))
        y0, y1 = sorted((y0, y1))
        xi0, yi0 = max(1, int(round(x0))), max(1, int(round(y0)))
        xi1, yi1 = min(width, int(round(x1))), min(height, int(round(y1)))
        if xi1 - xi0 <= 1 or yi1 - yi0 <= 1:  # the rule of mask_od.annotations: more than 1 px wide and high
            raise LabelingError(f"box #{i} ({name}) is empty or at most 1 px inside the {width}x{height} image: draw it again")
        out.append((name, xi0, yi0, xi1, yi1))
    return out


def objects_to_widget(objects: Sequence[tuple[str, float, float, float, float]]) -> list[dict]:
    """VOC boxes (name, xmin, ymin, xmax, ymax) -> jupyter-bbox-widget boxes."""
    return [{"x": float(x0), "y": float(y0), "width": float(x1 - x0), "height": float(y1 - y0), "label": n}
            for n, x0, y0, x1, y1 in objects]


def prelabels(detections: Detections, width: int, height: int, score: float = LIVE) -> list[dict]:
    """A detector's boxes at or above ``score`` as widget boxes in image pixels, clipped to the image, named by the
    label map (``detections.names``)."""
    det = detections.above(score)
    out = []
    for (y0, x0, y1, x1), name in zip(np.clip(det.boxes, 0.0, 1.0), det.names or [str(c) for c in det.classes]):
        out.append({"x": float(x0 * width), "y": float(y0 * height), "width": float((x1 - x0) * width),
                    "height": float((y1 - y0) * height), "label": name})
    return [b for b in out if b["width"] > 0 and b["height"] > 0]


@dataclasses.dataclass
class ImageState:
    """What the labeller knows of one image: its size, the boxes to show, and why it cannot be labelled (if so)."""

    path: Path
    width: int = 0
    height: int = 0
    depth: int = 3
    boxes: list[dict] = dataclasses.field(default_factory=list)
    problem: str = ""  # an undecodable image or a malformed XML: shown, skipped, never written
    orientation: int = 0  # EXIF orientation of a JPEG; > 1: the widget is given the stored pixels, not the file


def image_files(folder: Path | str) -> list[Path]:
    """Images under ``folder``, subfolders included (capture writes one per label), hidden files left out. Raises
    :class:`LabelingError` naming both files when two images share a name (``a.jpg``, ``a.PNG``): they would share
    ``a.xml``, one opening with the other's boxes and saving over them."""
    files = list_image_files(folder)
    by_stem: dict[Path, Path] = {}
    clashes = []
    for p in files:
        first = by_stem.setdefault(p.with_suffix(""), p)
        if first != p:
            clashes.append(f"{first} and {p}")
    if clashes:
        raise LabelingError(f"{len(clashes)} pair(s) of images share one name and would share one .xml: "
                            f"{'; '.join(clashes[:5])}; rename or move one of each pair (nothing was saved)")
    return files


def stored_pixels_png(path: Path | str) -> bytes:
    """PNG bytes of the image's pixels as stored (EXIF orientation ignored): what a browser shows without turning
    it, so boxes are drawn on the pixels the XML and training use."""
    import cv2

    rgb = read_image_rgb(path)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise LabelingError(f"{path}: cannot encode for display")
    return buf.tobytes()


class Labeler:
    """Steps through the images of ``image_dir``: shows each with its boxes (its XML if there is one, else the
    ``detector``'s boxes at or above ``score`` when one is given, else none), saves LabelImg-identical XML beside the
    image (atomically; images are never changed). ``view`` is the widget to display in a notebook: the image with
    Submit (= save and next) and Skip, plus Back and Save buttons and a "12 / 40 labelled" line."""

    def __init__(self, image_dir: Path | str, label_map: Mapping[int, str] | Path | str, detector=None, score: float = LIVE):
        from mask_od.label_map import read_label_map

        self.image_dir = Path(image_dir)
        self.label_map = read_label_map(label_map) if isinstance(label_map, (str, Path)) else dict(label_map)
        self.classes = list(self.label_map.values())
        self.detector, self.score = detector, score
        self.images = image_files(self.image_dir)
        if not self.images:
            raise LabelingError(f"{self.image_dir}: no images ({', '.join(IMAGE_EXTENSIONS[:4])}) to label")
        self.index, self.messages, self._view = 0, [], None
        self.state = self._load(0)

    def xml_path(self, image: Path) -> Path:
        return image.with_suffix(".xml")

    def labelled(self) -> int:
        return sum(self.xml_path(p).is_file() for p in self.images)

    def _load(self, index: int) -> ImageState:
        path = self.images[index]
        st = ImageState(path)
        try:
            rgb = read_image_rgb(path)
        except AnnotationError as e:
            st.problem = f"skipped: {e}"
            return st
        st.height, st.width = rgb.shape[:2]
        st.depth = 1 if _is_gray(path) else 3
        if path.suffix.lower() in (".jpg", ".jpeg", ".jpe"):
            st.orientation = exif_orientation(path.read_bytes())
        xml = self.xml_path(path)
        if xml.is_file():
            try:
                ann, _ = load_voc_example(xml, path.parent)
                st.boxes = objects_to_widget([(n, *b) for n, b in zip(ann.names, ann.boxes_xyxy.tolist())])
            except AnnotationError as e:
                st.problem = f"not overwritten: {e}"
        elif self.detector is not None:  # its classes matched by name: boxes of classes not labelled here are dropped
            st.boxes = [b for b in prelabels(self.detector.predict(rgb), st.width, st.height, self.score)
                        if b["label"] in self.classes]
        return st

    def show(self, index: int) -> ImageState:
        """Go to image ``index`` (clamped to the folder); returns its state."""
        self.index = int(np.clip(index, 0, len(self.images) - 1))
        self.state = self._load(self.index)
        if self.state.problem:
            self.messages.append(f"{self.state.path.name}: {self.state.problem}")
        elif self.state.orientation > 1:
            self.messages.append(f"{self.state.path.name}: shown as stored (EXIF orientation {self.state.orientation} "
                                 "ignored, as training reads it): draw on it as it is")
        self._refresh()
        return self.state

    def save(self, bboxes: Sequence[Mapping] | None = None) -> Path | None:
        """Write the boxes (the widget's, or ``bboxes``) of the current image as VOC XML beside it; returns the path,
        or None when the image cannot be labelled (undecodable, or its existing XML is malformed: left as it is)."""
        st = self.state
        if st.problem:
            self.messages.append(f"{st.path.name}: {st.problem}")
            self._refresh()
            return None
        boxes = list(bboxes if bboxes is not None else (self._view_widget.bboxes if self._view else st.boxes))
        try:
            objects = widget_to_objects(boxes, st.width, st.height, self.classes)
        except LabelingError as e:
            self.messages.append(f"{st.path.name}: {e}")
            self._refresh()
            raise
        path = write_text_atomic(self.xml_path(st.path), voc_xml_string(st.path, st.width, st.height, st.depth, objects), overwrite=True)
        st.boxes = objects_to_widget(objects)
        self.messages.append(f"saved {path.name} ({len(objects)} boxes)")
        self._refresh()
        return path

    def accept_prelabels(self) -> int:
        """Save the boxes shown (the detector's pre-labels) for every image that has no XML yet, unreviewed: for
        headless runs and tests; returns how many files were written."""
        written = 0
        for i, p in enumerate(self.images):
            if not self.xml_path(p).is_file():
                self.show(i)
                written += self.save() is not None
        return written

    def next(self) -> ImageState:
        return self.show(self.index + 1)

    def back(self) -> ImageState:
        return self.show(self.index - 1)

    def status(self) -> str:
        return f"image {self.index + 1} / {len(self.images)}: {self.state.path.name} | {self.labelled()} / {len(self.images)} labelled"

    # --- the notebook view ------------------------------------------------------------------------------------------
    @property
    def view(self):
        """An ipywidgets box: the labelling widget, Back / Save / Next buttons, the status line and messages."""
        if self._view is None:
            import ipywidgets as w
            from jupyter_bbox_widget import BBoxWidget

            self._view_widget = BBoxWidget(classes=self.classes, hide_buttons=False)
            self._view_widget.on_submit(self._submit)
            self._view_widget.on_skip(self.next)
            back, save, nxt = (w.Button(description=d) for d in ("Back", "Save", "Next"))
            back.on_click(lambda _: self.back())
            save.on_click(lambda _: self._save_quietly())
            nxt.on_click(lambda _: self.next())
            self._status = w.HTML()
            self._view = w.VBox([self._status, w.HBox([back, save, nxt]), self._view_widget])
            self._refresh()
        return self._view

    def _save_quietly(self) -> None:
        try:
            self.save()
        except LabelingError:
            pass  # shown in the messages

    def _submit(self) -> None:
        try:
            if self.save() is not None or self.state.problem:
                self.next()
        except LabelingError:
            pass

    def _refresh(self) -> None:
        if self._view is None:
            return
        import html

        st = self.state
        if st.orientation > 1 and not st.problem:  # the stored pixels, not the file a browser would show turned
            self._view_widget.image = ""
            self._view_widget.image_bytes = stored_pixels_png(st.path)
        else:
            self._view_widget.image = "" if st.problem else str(st.path)
        self._view_widget.bboxes = [] if st.problem else [dict(b) for b in st.boxes]
        shown = "<br>".join(html.escape(m) for m in self.messages[-3:])
        self._status.value = f"<b>{html.escape(self.status())}</b><br>{shown}"


def _is_gray(path: Path) -> bool:
    import cv2

    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return arr is not None and arr.ndim == 2


def label_images(image_dir: Path | str, label_map: Mapping[int, str] | Path | str, detector=None, score: float = LIVE) -> Labeler:
    """A :class:`Labeler` for ``image_dir``; display ``labeler.view`` in the notebook."""
    return Labeler(image_dir, label_map, detector, score)
