"""Frame sources shared by capture and live detection: camera index, video file, image folder, stream URL, iterator."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator, Union

import numpy as np

from mask_od.annotations import IMAGE_EXTENSIONS, list_image_files
from mask_od.errors import MaskODError

Source = Union[int, str, Path, Iterable[np.ndarray]]
STREAM_TIMEOUT_S = 10.0  # a stream URL that does not answer within this long fails (opening) or ends (reading)


class SourceError(MaskODError, RuntimeError):
    """A frame source cannot be opened; the message says which and what to try."""


def is_live(source: Source) -> bool:
    """A camera index (int or digit string) or a stream URL: frames arrive in real time (stale ones may be dropped)
    or fail; not a file, folder or iterator."""
    return isinstance(source, int) or (isinstance(source, str) and (source.isdigit() or "://" in source))


def describe_source(source: Source) -> str:
    if isinstance(source, (int, str, Path)):
        return f"camera {source}" if isinstance(source, int) or str(source).isdigit() else str(source)
    return type(source).__name__


def _open_capture(source: int | str, timeout_s: float = STREAM_TIMEOUT_S):
    import cv2

    stream = isinstance(source, str) and "://" in source
    if stream:  # FFmpeg would wait on a silent server for minutes, or forever
        ms = int(timeout_s * 1000)
        cap = cv2.VideoCapture(source, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])
    else:
        cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        cap.release()
        if isinstance(source, int):
            raise SourceError(
                f"camera {source} could not be opened: no camera at that index, or it is busy. On Colab use the "
                "browser webcam cell; elsewhere try another index or pass a video file"
            )
        if stream:
            raise SourceError(f"{source}: the stream could not be opened (refused, or no answer within {timeout_s:g} s: "
                              "wrong URL, server down or unreachable, or a codec FFmpeg lacks)")
        raise SourceError(f"{source}: could not be opened as a video (missing file or unsupported codec)")
    return cap


_SAID_UNDECODABLE: set[Path] = set()  # each photo that cannot be decoded is named once, not on every looped pass
_SAID_SKIPPED: set[tuple] = set()  # (folder, names) whose skipped non-images were said: once, not on every looped pass


def iter_folder(folder: Path | str, files: list[Path] | None = None, max_frames: int | None = None) -> Iterator[tuple[Path, np.ndarray]]:
    """(path, BGR uint8 ``[H, W, 3]`` pixels as stored, EXIF ignored, as training and LabelImg read them) for each
    image of ``folder`` (``files``: its images, default :func:`~mask_od.annotations.list_image_files`) in order. One
    that cannot be decoded is skipped with a line naming it; :class:`SourceError` when none of them decodes."""
    import cv2

    files = list_image_files(Path(folder), recursive=False) if files is None else files
    count = bad = 0
    for f in files:
        if max_frames is not None and count >= max_frames:
            return
        frame = cv2.imread(str(f), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        if frame is None:  # one bad photo must not end the folder (a monitor restarted it from the start)
            bad += 1
            if f not in _SAID_UNDECODABLE:
                _SAID_UNDECODABLE.add(f)
                print(f"{f}: cannot decode image (corrupt or not an image), skipped", flush=True)
            continue
        count += 1
        yield f, frame
    if files and bad == len(files):
        raise SourceError(f"{folder}: none of its {len(files)} image(s) could be decoded (corrupt or not images)")


def iter_frames(source: Source, max_frames: int | None = None, timeout_s: float = STREAM_TIMEOUT_S) -> Iterator[np.ndarray]:
    """Yield BGR uint8 ``[H, W, 3]`` frames until the source ends; a camera whose read fails is read again until it
    answers, and ends when it has given no frame for ``timeout_s`` (a video file or stream ends at its first failed
    read: FFmpeg already waits ``timeout_s`` for a stream's next packet).

    ``source``: camera index (int or digit string), video path, folder of images, ``rtsp://``/``http://`` URL (a
    video file, or an MJPEG stream as IP-camera apps serve), or any iterable of frames. A folder's other files and
    subfolders are skipped, and one printed line says how many and names a few; an image that cannot be decoded is
    skipped with a line naming it. Raises :class:`SourceError` at once when it cannot be opened, and for a folder
    none of whose images decode; a stream silent for ``timeout_s`` fails to open or ends.
    """
    if isinstance(source, str) and source.isdigit():
        source = int(source)
    count = 0
    if isinstance(source, Path) or (isinstance(source, str) and "://" not in source):
        path = Path(source)
        if path.is_dir():
            entries = sorted(path.iterdir())
            files = list_image_files(path, recursive=False)
            if not files:
                raise SourceError(f"{path}: folder holds no images ({', '.join(IMAGE_EXTENSIONS[:5])} …, any case)")
            other = [p.name for p in entries if p not in files and not p.name.startswith(".")]
            if other and (path, tuple(other)) not in _SAID_SKIPPED:
                _SAID_SKIPPED.add((path, tuple(other)))
                print(f"{path}: skipped {len(other)} file(s) or folder(s) that are not images: "
                      f"{', '.join(other[:5])}{' ...' if len(other) > 5 else ''}", flush=True)
            for _, frame in iter_folder(path, files, max_frames):
                yield frame
            return
        if not path.exists():
            raise SourceError(f"{path}: no such video file or folder")
        source = str(path)
    if isinstance(source, (int, str)):
        import time

        camera, cap = isinstance(source, int), _open_capture(source, timeout_s)
        try:
            last_frame = time.monotonic()
            while max_frames is None or count < max_frames:
                ok, frame = cap.read()
                if not ok or frame is None:
                    if not camera or time.monotonic() - last_frame > timeout_s:
                        return
                    time.sleep(0.02)  # one dropped USB frame: read again
                    continue
                last_frame = time.monotonic()
                count += 1
                yield frame
        finally:
            cap.release()
        return
    for frame in source:
        if max_frames is not None and count >= max_frames:
            return
        count += 1
        yield np.asarray(frame)
