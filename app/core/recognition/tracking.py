"""Per-face tracks across video frames: IoU matching, stable track ids, smoothed probabilities.

A face seen in consecutive frames keeps one track id. Its probabilities are smoothed with an exponential
moving average so the label (the argmax of the smoothed probabilities) does not flicker from frame to
frame. A track that is not matched for ``max_missed`` frames expires; its id is never reused.

The tracker works on any dataclass with ``box`` (x, y, w, h), ``probabilities`` (label -> probability),
``label``, ``score`` and ``track_id`` fields, such as :class:`app.core.recognition.pipeline.Face`, and returns copies
made with :func:`dataclasses.replace`, so the pipeline's own results are never changed in place.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any, Sequence, TypeVar

logger = logging.getLogger(__name__)

Box = tuple[int, int, int, int]
FaceT = TypeVar("FaceT")


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x, y, w, h) boxes; 0.0 when either is empty."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    if aw <= 0 or ah <= 0 or bw <= 0 or bh <= 0:
        return 0.0
    ix = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Track:
    """One face followed across frames."""

    track_id: int
    box: Box
    #: Smoothed probabilities (label -> probability); empty for faces seen without a model.
    probabilities: dict[str, float] = field(default_factory=dict)
    hits: int = 1  # frames in which the track was matched
    missed: int = 0  # consecutive frames without a match

    @property
    def label(self) -> str:
        if not self.probabilities:
            return ""
        return max(self.probabilities, key=self.probabilities.__getitem__)


class FaceTracker:
    """Match each frame's faces to existing tracks by IoU and smooth their probabilities.

    ``alpha`` is the weight of the newest frame in the moving average (1.0 = no smoothing).
    ``smoothing`` can be switched off at any time; tracks and ids are kept either way.
    """

    def __init__(self, iou_threshold: float = 0.3, max_missed: int = 10, alpha: float = 0.35,
                 smoothing: bool = True) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        self.iou_threshold = iou_threshold
        self.max_missed = max_missed
        self.alpha = alpha
        self.smoothing = smoothing
        self._tracks: list[Track] = []
        self._next_id = 1

    @property
    def tracks(self) -> list[Track]:
        """Live tracks (including ones missed for fewer than ``max_missed`` frames)."""
        return list(self._tracks)

    def reset(self) -> None:
        """Forget every track (new source); ids start again at 1."""
        self._tracks.clear()
        self._next_id = 1

    def _match(self, boxes: Sequence[Box]) -> dict[int, int]:
        """Greedy IoU matching: face index -> track index, best overlaps first."""
        pairs: list[tuple[float, int, int]] = []
        for fi, box in enumerate(boxes):
            for ti, track in enumerate(self._tracks):
                overlap = iou(box, track.box)
                if overlap >= self.iou_threshold:
                    pairs.append((overlap, fi, ti))
        pairs.sort(key=lambda p: p[0], reverse=True)
        matched: dict[int, int] = {}
        used_tracks: set[int] = set()
        for _, fi, ti in pairs:
            if fi in matched or ti in used_tracks:
                continue
            matched[fi] = ti
            used_tracks.add(ti)
        return matched

    def _smooth(self, track: Track, new: dict[str, float]) -> dict[str, float]:
        old = track.probabilities
        # A different label set (the model was switched) cannot be averaged with the old one: start over.
        if not self.smoothing or not old or set(old) != set(new):
            return dict(new)
        a = self.alpha
        return {k: a * float(v) + (1.0 - a) * old[k] for k, v in new.items()}

    def update(self, faces: Sequence[FaceT]) -> list[FaceT]:
        """Assign track ids to this frame's faces and return copies with smoothed probabilities.

        Call once per frame, also with an empty list (frames without faces age the tracks).
        """
        boxes = [tuple(int(v) for v in f.box) for f in faces]  # type: ignore[attr-defined]
        matched = self._match(boxes)  # type: ignore[arg-type]
        out: list[FaceT] = []
        seen: set[int] = set()
        for fi, face in enumerate(faces):
            probs: dict[str, float] = dict(getattr(face, "probabilities", None) or {})
            if fi in matched:
                track = self._tracks[matched[fi]]
                track.box = boxes[fi]  # type: ignore[assignment]
                track.hits += 1
                track.missed = 0
                track.probabilities = self._smooth(track, probs)
            else:
                track = Track(self._next_id, boxes[fi], dict(probs))  # type: ignore[arg-type]
                self._next_id += 1
                self._tracks.append(track)
            seen.add(track.track_id)
            out.append(self._apply(face, track))
        for track in self._tracks:
            if track.track_id not in seen:
                track.missed += 1
        expired = [t.track_id for t in self._tracks if t.missed > self.max_missed]
        if expired:
            logger.debug("tracks expired: %s", expired)
            self._tracks = [t for t in self._tracks if t.missed <= self.max_missed]
        return out

    @staticmethod
    def _apply(face: Any, track: Track) -> Any:
        changes: dict[str, Any] = {"track_id": track.track_id}
        if track.probabilities:
            label = track.label
            changes.update(probabilities=dict(track.probabilities), label=label,
                           score=float(track.probabilities[label]))
        return dataclasses.replace(face, **changes)
