"""Collect training pictures: N per label from a camera (or any frame source), one every K seconds."""

from __future__ import annotations

import dataclasses
import time
import uuid
from pathlib import Path
from typing import Callable, Sequence

from mask_od.errors import MaskODError
from mask_od.fileio import refuse_file_in_path, write_bytes_atomic
from mask_od.sources import Source, is_live, iter_frames


class LabelError(MaskODError, ValueError):
    """A class name that cannot be a folder and file name prefix (empty, a path, "." or "..")."""


def check_labels(labels: Sequence[str]) -> list[str]:
    """``labels`` without repeats, in order; raises :class:`LabelError` for one that cannot name a folder: each is
    the folder and the file name prefix of its pictures (and, later, a class name)."""
    for label in labels:
        if not label.strip() or label != label.strip() or any(c in label for c in "/\\") or label in (".", ".."):
            raise LabelError(f"label {label!r}: a class name is a folder name here: not empty, no '/' or '\\', no "
                             "leading or trailing spaces (e.g. with_mask)")
    return list(dict.fromkeys(labels))


@dataclasses.dataclass
class CaptureResult:
    """Files written per label, and whether the source ended before every picture was taken."""

    saved: dict[str, list[Path]]
    ended_early: bool
    message: str = ""

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.saved.values())


def capture_images(
    labels: Sequence[str],
    num_images: int = 5,
    interval_s: float = 2.0,
    source: Source = 0,
    out_dir: Path | str = "workspace/images/collected",
    on_saved: Callable[[str, Path], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> CaptureResult:
    """Save ``num_images`` frames per label to ``out_dir/<label>/<label>.<uuid>.jpg``, waiting ``interval_s`` between
    shots (time to change pose). Existing files are never replaced. If the source dies midway, what was saved is kept
    and ``ended_early`` is set; a source that cannot be opened raises ``SourceError`` at once. From a video file (a
    webcam's stand-in) the shots are ``interval_s`` of video time apart, or with ``interval_s`` 0 spread evenly over
    the video, not consecutive frames."""
    import cv2

    out_dir = Path(out_dir)
    labels = check_labels(labels)
    for label in labels:  # before the camera opens: a file named like a folder (or above it) is no place for photos
        refuse_file_in_path(out_dir / label)
    saved: dict[str, list[Path]] = {label: [] for label in labels}
    skip = _frames_between_shots(source, interval_s, len(labels) * num_images)
    if skip is not None:  # a file's time is its frames, not the wall clock
        sleep = lambda seconds: None  # noqa: E731
    frames = iter_frames(source)
    try:
        for label in labels:
            for _ in range(num_images):
                frame = next(frames, None)  # the source opens here: its folder is made only once a picture is taken
                if frame is None:
                    done = sum(len(v) for v in saved.values())
                    return CaptureResult(saved, True, f"source ended after {done} picture(s); they are kept")
                ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
                if not ok:
                    raise RuntimeError("JPEG encoding failed")
                (out_dir / label).mkdir(parents=True, exist_ok=True)
                path = write_bytes_atomic(out_dir / label / f"{label}.{uuid.uuid1()}.jpg", buf.tobytes())
                saved[label].append(path)
                if on_saved:
                    on_saved(label, path)
                for _ in range(skip or 0):
                    next(frames, None)
                if interval_s > 0:
                    sleep(interval_s)
    finally:
        frames.close()
    return CaptureResult(saved, False, f"saved {sum(len(v) for v in saved.values())} picture(s)")


def _frames_between_shots(source: Source, interval_s: float, shots: int) -> int | None:
    """Frames to pass over between two shots from a video file (``interval_s`` of its time, or with 0 the video
    spread over ``shots``); None for cameras, streams, folders and iterators (their shots wait on the clock)."""
    import cv2

    from mask_od.annotations import is_image_file

    if not isinstance(source, (str, Path)) or is_live(source):
        return None
    path = Path(source)
    if not path.is_file() or is_image_file(path):
        return None
    cap = cv2.VideoCapture(str(path))
    try:
        fps, count = cap.get(cv2.CAP_PROP_FPS) or 30.0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        cap.release()
    step = round(interval_s * fps) if interval_s > 0 else (count // max(shots, 1) if count > 0 else 1)
    return max(step, 1) - 1
