"""What an analysis found, per person, gathered frame by frame in bounded memory.

For each person: frames seen, first and last time, how often each emotion was the top label (its share),
the mean probabilities, a timeline of at most ``TIMELINE_POINTS`` points (neighbouring points are merged
when it fills, so a ten-hour video costs what a ten-minute one does), a face thumbnail (the largest view
of the face) and the strongest moment of each emotion with a thumbnail of its frame. Thumbnails are
JPEG bytes, made only when a record is beaten, so memory stays flat.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

logger = logging.getLogger(__name__)

TIMELINE_POINTS = 600
FACE_THUMB = 112  # pixels, square
FRAME_THUMB = 360  # pixels, longer side
#: A strongest moment is only shown with its frame when the emotion reached at least this probability.
MOMENT_MIN = 0.25


def _jpeg(image: np.ndarray, quality: int = 82) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return data.tobytes() if ok else b""


def face_thumbnail(image: np.ndarray, box: Sequence[int], size: int = FACE_THUMB) -> bytes:
    """A square JPEG of the face with a margin around its box."""
    x, y, w, h = (int(v) for v in box)
    side = int(max(w, h) * 1.4)
    cx, cy = x + w // 2, y + h // 2
    x0, y0 = max(0, cx - side // 2), max(0, cy - side // 2)
    crop = image[y0:y0 + side, x0:x0 + side]
    if crop.size == 0:
        return b""
    return _jpeg(cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA))


def frame_thumbnail(image: np.ndarray, box: Sequence[int], colour: tuple[int, int, int],
                    size: int = FRAME_THUMB) -> bytes:
    """A JPEG of the whole frame, ``size`` pixels on its longer side, with ``box`` outlined."""
    scale = min(1.0, size / max(image.shape[:2]))
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else \
        image.copy()
    x, y, w, h = (round(v * scale) for v in box)
    cv2.rectangle(small, (x, y), (x + w, y + h), colour, 2, cv2.LINE_AA)
    return _jpeg(small)


class Timeline:
    """At most ``capacity`` points (time_s, frame, mean probabilities); pairs merge when it is full."""

    def __init__(self, num_labels: int, capacity: int = TIMELINE_POINTS) -> None:
        self.capacity = max(4, capacity - capacity % 2)
        self._times = np.zeros(self.capacity, np.float64)
        self._frames = np.zeros(self.capacity, np.int64)
        self._probs = np.zeros((self.capacity, num_labels), np.float32)
        self._weights = np.zeros(self.capacity, np.int64)
        self.size = 0
        self.stride = 1  # samples per full point
        self._open = 0  # samples in the last point so far

    def add(self, time_s: float, frame: int, probabilities: np.ndarray) -> None:
        if self.size and self._open < self.stride:
            i = self.size - 1
            n = self._weights[i]
            self._probs[i] = (self._probs[i] * n + probabilities) / (n + 1)
            self._weights[i] = n + 1
            self._open += 1
            return
        if self.size == self.capacity:
            self._halve()
        i = self.size
        self._times[i], self._frames[i], self._probs[i], self._weights[i] = time_s, frame, probabilities, 1
        self.size += 1
        self._open = 1

    def _halve(self) -> None:
        half = self.capacity // 2
        w = self._weights.reshape(half, 2).astype(np.float32)
        probs = self._probs.reshape(half, 2, -1)
        merged = (probs * w[:, :, None]).sum(axis=1) / np.maximum(w.sum(axis=1), 1)[:, None]
        self._times[:half] = self._times[0::2]
        self._frames[:half] = self._frames[0::2]
        self._probs[:half] = merged
        self._weights[:half] = w.sum(axis=1).astype(np.int64)
        self.size = half
        self.stride *= 2
        self._open = self.stride  # the last merged point is full

    def points(self) -> list[tuple[float, int, np.ndarray]]:
        return [(float(self._times[i]), int(self._frames[i]), self._probs[i].copy()) for i in range(self.size)]


@dataclass
class Moment:
    """The strongest frame of one emotion for one person."""

    score: float
    time_s: float
    frame: int
    box: tuple[int, int, int, int]
    thumbnail: bytes = b""


@dataclass
class PersonStats:
    """Everything the report says about one person."""

    number: int
    labels: tuple[str, ...]
    frames: int = 0
    first_s: float = 0.0
    last_s: float = 0.0
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    prob_sum: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    timeline: Timeline | None = None
    thumbnail: bytes = b""
    thumb_area: int = 0
    moments: dict[str, Moment] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.labels)
        self.counts = np.zeros(n, np.int64)
        self.prob_sum = np.zeros(n, np.float64)
        self.timeline = Timeline(n)

    def share(self) -> dict[str, float]:
        total = max(1, int(self.counts.sum()))
        return {label: float(c) / total for label, c in zip(self.labels, self.counts)}

    def mean(self) -> dict[str, float]:
        return {label: float(s) / max(1, self.frames) for label, s in zip(self.labels, self.prob_sum)}

    def to_dict(self) -> dict[str, Any]:
        assert self.timeline is not None
        return {
            "person": self.number, "frames": self.frames,
            "first_s": round(self.first_s, 3), "last_s": round(self.last_s, 3),
            "share": {k: round(v, 4) for k, v in self.share().items()},
            "mean": {k: round(v, 4) for k, v in self.mean().items()},
            "timeline": [[round(t, 3), f, *(round(float(p), 4) for p in probs)]
                         for t, f, probs in self.timeline.points()],
            "moments": {label: {"time_s": round(m.time_s, 3), "frame": m.frame, "score": round(m.score, 4),
                                "box": list(m.box)} for label, m in self.moments.items()},
        }


class SummaryBuilder:
    """Feed it each analysed frame's faces (with person numbers); read ``people`` at the end."""

    def __init__(self, labels: Sequence[str]) -> None:
        from app.core.labels import colour_for

        self.labels = tuple(labels)
        self._colours = {label: tuple(reversed(colour_for(label))) for label in self.labels}
        self.people: dict[int, PersonStats] = {}
        self.frames = 0
        self.frames_with_faces = 0
        self.faces = 0

    def add(self, frame: int, time_s: float, image: np.ndarray, faces: Sequence[Any]) -> None:
        self.frames += 1
        if not faces:
            return
        self.frames_with_faces += 1
        for face in faces:
            if face.track_id is None or not face.probabilities:
                continue
            self.faces += 1
            stats = self.people.get(face.track_id)
            if stats is None:
                stats = self.people[face.track_id] = PersonStats(face.track_id, self.labels, first_s=time_s)
            probs = np.array([float(face.probabilities.get(k, 0.0)) for k in self.labels], np.float32)
            stats.frames += 1
            stats.last_s = time_s
            stats.counts[int(np.argmax(probs))] += 1
            stats.prob_sum += probs
            assert stats.timeline is not None
            stats.timeline.add(time_s, frame, probs)
            box = tuple(int(v) for v in face.box)
            area = box[2] * box[3]
            if area > 1.25 * stats.thumb_area:
                stats.thumbnail, stats.thumb_area = face_thumbnail(image, box), area
            for label, p in zip(self.labels, probs):
                best = stats.moments.get(label)
                # Beaten by a clear margin only: each new record costs a JPEG.
                if best is None or p > best.score + 0.005:
                    thumb = frame_thumbnail(image, box, self._colours[label]) if p >= MOMENT_MIN else b""
                    stats.moments[label] = Moment(float(p), time_s, frame, box, thumb)  # type: ignore[arg-type]

    def ordered(self) -> list[PersonStats]:
        """People seen, most frames first."""
        return sorted(self.people.values(), key=lambda s: (-s.frames, s.number))
