"""People across frames: ByteTrack (supervision) on the detector's boxes, each person's class by vote, unique people per
class since start, and one event per person seen without a mask (or wearing it wrong) for a few frames."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Mapping

import numpy as np

from mask_od.boxes import norm_yxyx_to_voc_xyxy
from mask_od.detections import Detections

BARE = ("without_mask", "mask_weared_incorrect")  # classes an event (and an alert) is raised for


@dataclasses.dataclass
class TrackerConfig:
    """How faces become people. ``fps`` is the source's frame rate (it turns ``lost_s`` into frames)."""

    activation_threshold: float = 0.55  # a new person starts from a detection scoring >= this + 0.1 (ByteTrack's rule);
    # weaker detections (down to the detector's threshold) only extend people already tracked
    lost_s: float = 1.0  # a person unseen this long is gone; seen again later, they count as a new person (no re-id)
    min_frames: int = 5  # frames a track needs before it counts as a person, and bare-face frames before an event
    event_classes: tuple[str, ...] = BARE
    fps: float = 30.0


@dataclasses.dataclass
class Person:
    """One track: ``votes`` are frames per class, ``frames`` all frames it was matched in, frame numbers of the source."""

    track_id: int
    first_frame: int
    last_frame: int
    frames: int = 0
    votes: dict[str, int] = dataclasses.field(default_factory=dict)
    event: bool = False  # an event was raised for this person

    @property
    def name(self) -> str:
        """The class seen in most frames (ties: the first seen)."""
        return max(self.votes, key=self.votes.get) if self.votes else ""


@dataclasses.dataclass
class TrackedFrame:
    """The detections that belong to a tracked person (``track_ids`` int ``[N]`` beside them) and the people who just
    reached an event (with the index of their box in ``detections``)."""

    detections: Detections
    track_ids: np.ndarray
    events: list[tuple[Person, int]]


class PersonTracker:
    """One source's tracker. ``update(det, (h, w))`` per frame, in order; ``unique_counts()`` at any time. Memory stays
    bounded: people unseen for longer than ``lost_s`` are folded into per-class totals and forgotten."""

    def __init__(self, label_map: Mapping[int, str], config: TrackerConfig | None = None):
        import supervision as sv

        self.config = cfg = config or TrackerConfig()
        self.label_map = dict(label_map)
        self.max_lost = max(1, int(round(cfg.lost_s * cfg.fps)))
        with warnings.catch_warnings():  # sv.ByteTrack is deprecated (moved to `trackers`, which pulls opencv-python)
            warnings.simplefilter("ignore")
            self._bt = sv.ByteTrack(track_activation_threshold=cfg.activation_threshold,
                                    lost_track_buffer=int(round(cfg.lost_s * 30)), frame_rate=cfg.fps,
                                    minimum_consecutive_frames=min(3, cfg.min_frames))
        self.people: dict[int, Person] = {}
        self.gone: dict[str, int] = {}  # people forgotten, per class
        self.frame = -1

    def update(self, det: Detections, size_hw: tuple[int, int]) -> TrackedFrame:
        """Match this frame's detections to people; returns those matched (a detection no track took is left out)."""
        import supervision as sv

        self.frame += 1
        h, w = size_hw
        xyxy = norm_yxyx_to_voc_xyxy(det.boxes.reshape(-1, 4), w, h).astype(np.float32)
        svd = sv.Detections(xyxy=xyxy, confidence=det.scores.astype(np.float32), class_id=det.classes.astype(int),
                            data={"index": np.arange(len(det))})
        out = self._bt.update_with_detections(svd)
        idx = np.asarray(out.data.get("index", np.zeros(0, int)), int) if len(out) else np.zeros(0, int)
        ids = np.asarray(out.tracker_id, int) if len(out) else np.zeros(0, int)
        kept = det.select(idx)
        events = []
        for k, (tid, name) in enumerate(zip(ids.tolist(), kept.names or [""] * len(ids))):
            p = self.people.get(tid)
            if p is None:
                p = self.people[tid] = Person(tid, self.frame, self.frame)
            p.last_frame, p.frames = self.frame, p.frames + 1
            p.votes[name] = p.votes.get(name, 0) + 1
            bare = sum(v for n, v in p.votes.items() if n in self.config.event_classes)
            if not p.event and bare >= self.config.min_frames and p.name in self.config.event_classes:
                p.event = True
                events.append((p, k))
        self._forget(self.frame - self.max_lost - 1)
        return TrackedFrame(kept, ids, events)

    def _forget(self, before: int) -> None:
        for tid in [t for t, p in self.people.items() if p.last_frame < before]:
            p = self.people.pop(tid)
            if p.frames >= self.config.min_frames:
                self.gone[p.name] = self.gone.get(p.name, 0) + 1

    def unique_counts(self) -> dict[str, int]:
        """People per class since start (each counted once, in the class seen in most of their frames), every class of
        the label map listed."""
        out = {n: 0 for n in self.label_map.values()}
        for n, c in self.gone.items():
            out[n] = out.get(n, 0) + c
        for p in self.people.values():
            if p.frames >= self.config.min_frames:
                out[p.name] = out.get(p.name, 0) + 1
        return out
