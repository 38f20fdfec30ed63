"""Per-face tracks across video frames: IoU matching, person numbers, smoothed probabilities.

A face seen in consecutive frames keeps one track. Its probabilities are smoothed with an exponential
moving average so the label (the argmax of the smoothed probabilities) does not flicker from frame to
frame. A track that is not matched for ``max_missed`` frames expires.

The number a face carries (``track_id``) is a *person* number. When :meth:`FaceTracker.update` is given
the frame, a face is re-identified with face_recognition's 128-d encodings (``identity.py``) when its
track starts or is in doubt: after a scene cut, a gap of a few frames, a weak overlap with its last box,
or while another face overlaps it; never on every frame. A face that leaves and comes back, or a person
who returns after a cut, keeps their number; two faces in one frame never share a number, and a number
is never given to a second person. Without the frame (or without dlib) every new track gets a new number.

The tracker works on any dataclass with ``box`` (x, y, w, h), ``probabilities`` (label -> probability),
``label``, ``score`` and ``track_id`` fields, such as :class:`app.core.recognition.pipeline.Face`, and
returns copies made with :func:`dataclasses.replace`, so the pipeline's own results are never changed.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from app.core.errors import DetectorError
from app.core.recognition.identity import (
    FaceEncoder,
    PersonRegistry,
    is_scene_cut,
    scene_signature,
)

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
    """One face followed across frames; ``track_id`` is the person number it shows."""

    track_id: int
    box: Box
    #: Smoothed probabilities (label -> probability); empty for faces seen without a model.
    probabilities: dict[str, float] = field(default_factory=dict)
    hits: int = 1  # frames in which the track was matched
    missed: int = 0  # consecutive frames without a match
    verified: bool = False  # its person number was confirmed by a face encoding

    @property
    def label(self) -> str:
        if not self.probabilities:
            return ""
        return max(self.probabilities, key=self.probabilities.__getitem__)


class FaceTracker:
    """Match each frame's faces to tracks by IoU, give them person numbers, smooth their probabilities.

    ``alpha`` is the weight of the newest frame in the moving average (1.0 = no smoothing).
    ``smoothing`` can be switched off at any time; tracks and numbers are kept either way.
    ``reid``: re-identify faces by their encodings when :meth:`update` is given the frame.
    ``encoder`` replaces the face_recognition encoder (created on first use).
    """

    def __init__(self, iou_threshold: float = 0.3, max_missed: int = 10, alpha: float = 0.35,
                 smoothing: bool = True, *, reid: bool = True, encoder: Any = None,
                 registry: PersonRegistry | None = None, doubt_iou: float = 0.5, doubt_gap: int = 3) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        self.iou_threshold = iou_threshold
        self.max_missed = max_missed
        self.alpha = alpha
        self.smoothing = smoothing
        self.reid = reid
        self.doubt_iou = doubt_iou
        self.doubt_gap = doubt_gap
        self.people = registry or PersonRegistry()
        self._encoder = encoder
        self._encoder_failed = False
        self._signature: np.ndarray | None = None
        self._tracks: list[Track] = []
        self.cuts = 0  # scene cuts seen (re-identification mode only)

    @property
    def tracks(self) -> list[Track]:
        """Live tracks (including ones missed for fewer than ``max_missed`` frames)."""
        return list(self._tracks)

    @property
    def encodings(self) -> int:
        """Faces encoded so far (0 without re-identification)."""
        return int(getattr(self._encoder, "calls", 0))

    def reset(self) -> None:
        """Forget every track and person (new source); numbers start again at 1."""
        self._tracks.clear()
        self.people.reset()
        self._signature = None

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

    def _encoder_ready(self) -> bool:
        if self._encoder is not None:
            return True
        if self._encoder_failed:
            return False
        try:
            self._encoder = FaceEncoder()
        except DetectorError as exc:
            self._encoder_failed = True
            logger.warning("people are not re-identified: %s", exc)
            return False
        return True

    def update(self, faces: Sequence[FaceT], image: np.ndarray | None = None) -> list[FaceT]:
        """Give this frame's faces person numbers; return copies with smoothed probabilities.

        Call once per frame, also with an empty list (frames without faces age the tracks). ``image``
        (the BGR frame the boxes refer to) turns on re-identification.
        """
        boxes: list[Box] = [tuple(int(v) for v in f.box) for f in faces]  # type: ignore[attr-defined,misc]
        matched = self._match(boxes)
        # The encoder (dlib's models, about a second to load) is created only when a face needs it.
        use_reid = image is not None and self.reid and not self._encoder_failed
        cut = False
        if use_reid:
            signature = scene_signature(image)  # type: ignore[arg-type]
            cut = is_scene_cut(self._signature, signature)
            self._signature = signature
            self.cuts += int(cut)

        tracks: list[Track] = []
        doubtful: list[int] = []
        raw: list[dict[str, float]] = []
        for fi, face in enumerate(faces):
            probs: dict[str, float] = dict(getattr(face, "probabilities", None) or {})
            raw.append(probs)
            if fi in matched:
                track = self._tracks[matched[fi]]
                doubt = use_reid and (cut or not track.verified or track.missed >= self.doubt_gap
                                      or iou(boxes[fi], track.box) < self.doubt_iou
                                      or self._crowded(fi, boxes))
                track.box = boxes[fi]
                track.hits += 1
                track.missed = 0
                track.probabilities = self._smooth(track, probs)
            else:
                track = Track(0, boxes[fi], dict(probs))
                self._tracks.append(track)
                doubt = use_reid
            if doubt:
                doubtful.append(fi)
            elif track.track_id == 0:
                track.track_id = self.people.new_number()
            tracks.append(track)
        if doubtful and self._encoder_ready():
            self._identify(image, boxes, tracks, doubtful, raw)  # type: ignore[arg-type]
        for track in tracks:
            if track.track_id == 0:  # in doubt, but no encoder could be loaded
                track.track_id = self.people.new_number()

        out: list[FaceT] = [self._apply(face, track) for face, track in zip(faces, tracks)]
        current = {id(t) for t in tracks}
        for track in self._tracks:
            if id(track) not in current:
                track.missed += 1
        expired = [t.track_id for t in self._tracks if t.missed > self.max_missed]
        if expired:
            logger.debug("tracks expired: %s", expired)
            self._tracks = [t for t in self._tracks if t.missed <= self.max_missed]
        return out

    def _crowded(self, fi: int, boxes: Sequence[Box]) -> bool:
        """Another face overlaps this one: IoU matching may swap them."""
        return any(j != fi and iou(boxes[fi], other) > 0.1 for j, other in enumerate(boxes))

    def _identify(self, image: np.ndarray, boxes: Sequence[Box], tracks: list[Track], doubtful: list[int],
                  raw: list[dict[str, float]]) -> None:
        """Encode the doubtful faces and settle every person number of this frame."""
        encodings = self._encoder.encode(image, [boxes[fi] for fi in doubtful])
        doubt = set(doubtful)
        taken = {t.track_id for fi, t in enumerate(tracks) if fi not in doubt}
        open_faces: list[tuple[int, np.ndarray | None]] = []
        # A followed face that still looks like its person keeps the number (looser tolerance).
        for fi, encoding in zip(doubtful, encodings):
            track = tracks[fi]
            if (encoding is not None and track.track_id and track.track_id not in taken
                    and self.people.distance(track.track_id, encoding) <= self.people.keep_tolerance):
                self.people.add(track.track_id, encoding)
                track.verified = True
                taken.add(track.track_id)
            else:
                open_faces.append((fi, encoding))
        # The rest: nearest known person first, over all pairs, so two faces never claim one person.
        pairs = sorted((d, fi, number) for fi, encoding in open_faces if encoding is not None
                       for number, d in self.people.distances(encoding).items()
                       if number not in taken and d <= self.people.match_tolerance)
        settled: dict[int, int] = {}
        for _distance, fi, number in pairs:
            if fi in settled or number in taken:
                continue
            settled[fi] = number
            taken.add(number)
        for fi, encoding in open_faces:
            track = tracks[fi]
            old = track.track_id
            number = settled.get(fi)
            if number is None:
                number = old if (encoding is None and old and old not in taken) else self.people.new_number()
            if number != old and old:
                track.probabilities = dict(raw[fi])  # another person's history must not be averaged in
                logger.debug("face at %s: person %d -> %d", track.box, old, number)
            track.track_id = number
            track.verified = encoding is not None
            taken.add(number)
            self.people.add(number, encoding)
        # A person now seen here is no longer anywhere else: drop their stale (missed) tracks.
        current = {id(t) for t in tracks}
        self._tracks = [t for t in self._tracks if id(t) in current or t.track_id not in taken]

    @staticmethod
    def _apply(face: Any, track: Track) -> Any:
        changes: dict[str, Any] = {"track_id": track.track_id}
        if track.probabilities:
            label = track.label
            changes.update(probabilities=dict(track.probabilities), label=label,
                           score=float(track.probabilities[label]))
        return dataclasses.replace(face, **changes)
