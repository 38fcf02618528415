import time

import numpy as np
import pytest
from conftest import SHARED

from mask_od.annotations import parse_voc_dir
from mask_od.capture import capture_images
from mask_od.report import dataset_report, plot_dataset_report
from mask_od.sources import SourceError


def test_report_counts_and_figures(tiny_voc, tmp_path):
    anns = parse_voc_dir(tiny_voc.xml_dir)
    rep = dataset_report(anns)
    assert rep["images"] == 12
    assert rep["boxes_per_class"] == {k: v for k, v in tiny_voc.boxes_per_class.items() if v}
    assert rep["boxes"] == sum(tiny_voc.boxes_per_class.values())
    paths = plot_dataset_report(anns, tmp_path / "rep")
    for p in paths.values():
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000


def _frames(n):
    for i in range(n):
        yield np.full((48, 64, 3), i * 10, np.uint8)


def test_capture_from_frame_iterator_never_overwrites(tmp_path):
    waits = []
    r = capture_images(["with_mask", "without_mask"], 3, 2.0, _frames(10), tmp_path, sleep=waits.append)
    assert not r.ended_early and r.total == 6 and waits == [2.0] * 6
    files = sorted((tmp_path / "with_mask").glob("with_mask.*.jpg"))
    assert len(files) == 3
    r2 = capture_images(["with_mask"], 2, 0, _frames(5), tmp_path)
    assert len(list((tmp_path / "with_mask").glob("*.jpg"))) == 5  # new uuids, nothing replaced
    assert set(files) <= set((tmp_path / "with_mask").glob("*.jpg"))
    assert r2.total == 2


def test_dead_source_keeps_what_was_saved(tmp_path):
    r = capture_images(["a", "b"], 3, 0, _frames(4), tmp_path)
    assert r.ended_early and r.total == 4
    assert len(list((tmp_path / "b").glob("*.jpg"))) == 1


def test_missing_camera_fails_fast(tmp_path):
    t = time.perf_counter()
    with pytest.raises(SourceError, match="camera 9"):
        capture_images(["a"], 1, 0, 9, tmp_path)
    assert time.perf_counter() - t < 20.0  # not a hang (a loaded 2-core machine may take seconds to probe the camera)
    with pytest.raises(SourceError, match="no such"):
        capture_images(["a"], 1, 0, tmp_path / "nope.mp4", tmp_path)


def test_capture_from_shared_video(tmp_path):
    video = SHARED / "data" / "video" / "street-masks.mp4"
    if not video.exists():
        pytest.skip("../shared/data/video is absent")
    import cv2

    r = capture_images(["with_mask"], 4, 0, video, tmp_path)
    assert r.total == 4
    img = cv2.imread(str(r.saved["with_mask"][0]))
    assert img.shape == (768, 1366, 3)


def test_capture_from_a_video_file_takes_shots_apart_not_consecutive_frames(tmp_path):
    """A video standing in for the webcam: shots are interval_s of video time apart (or spread over the video with
    interval_s 0), without waiting on the clock; consecutive frames gave near-duplicate pictures."""
    import cv2
    import numpy as np

    video = tmp_path / "webcam.mp4"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 48))
    for i in range(40):  # frame i is a flat grey of 6 * i
        w.write(np.full((48, 64, 3), 6 * i, np.uint8))
    w.release()
    for interval, expected in ((0.0, [0, 10, 20, 30]), (1.0, [0, 10, 20, 30]), (0.5, [0, 5, 10, 15])):
        t = time.perf_counter()
        r = capture_images(["with_mask", "without_mask"], 2, interval, video, tmp_path / str(interval))
        assert time.perf_counter() - t < 10  # no sleeping on a file
        shots = r.saved["with_mask"] + r.saved["without_mask"]
        levels = [float(cv2.imread(str(p)).mean()) for p in shots]
        assert np.allclose(levels, [6 * i for i in expected], atol=4), (interval, levels)
