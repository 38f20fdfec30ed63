"""Who a face is: face_recognition's 128-d encodings and a registry of the people seen so far.

The tracker (``tracking.py``) follows faces from frame to frame by box overlap, which is cheap but knows
nothing about who is in the box. This module answers that question when it matters: when a track starts,
or when the tracker is in doubt (a scene cut, a weak overlap, a face back after a gap, two faces close
together). An encoding costs a landmark fit and a pass of dlib's ResNet (tens of ms per face on a CPU),
so it is never computed on every frame.

:class:`PersonRegistry` keeps a small gallery of encodings per person and hands out person numbers that
are never reused. Distances are Euclidean, as in ``face_recognition.face_distance``; that library's own
tolerance for "same person" is 0.6.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from app.core.errors import DetectorError

logger = logging.getLogger(__name__)

Box = tuple[int, int, int, int]

#: Below this distance a new face is taken for a known person (stricter than face_recognition's 0.6:
#: giving two people one number is worse than giving one person two numbers).
MATCH_TOLERANCE = 0.5
#: A face the tracker already follows keeps its person while its distance stays below this.
KEEP_TOLERANCE = 0.6


def _face_recognition_api() -> Any:
    try:
        with warnings.catch_warnings():
            # face_recognition_models imports pkg_resources, which warns on import.
            warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
            from face_recognition import api
    except ImportError as exc:
        raise DetectorError(f"re-identifying people needs dlib and face_recognition, which are not installed "
                            f"({exc}); install them (pip install dlib face_recognition).") from exc
    return api


def reid_available() -> bool:
    """True when face_recognition (and dlib) can be imported here."""
    try:
        _face_recognition_api()
    except DetectorError:
        return False
    return True


class FaceEncoder:
    """128-d encodings of face boxes in a BGR image (dlib's ResNet through face_recognition).

    Each face is cut out with a margin before the colour conversion, so a 4K frame is never converted
    whole. ``model="small"`` fits 5 landmarks (faster, what dlib's ResNet was trained with).
    """

    def __init__(self, model: str = "small", num_jitters: int = 1) -> None:
        self._api = _face_recognition_api()
        self.model = model
        self.num_jitters = int(num_jitters)
        self.calls = 0  # faces encoded so far (tests and the bench read it)

    def encode(self, image_bgr: np.ndarray, boxes: Sequence[Box]) -> list[np.ndarray | None]:
        """One encoding per box (None for a box too small or outside the image)."""
        height, width = image_bgr.shape[:2]
        out: list[np.ndarray | None] = []
        for x, y, w, h in boxes:
            if w < 8 or h < 8:
                out.append(None)
                continue
            pad = int(0.3 * max(w, h)) + 2
            x0, y0 = max(0, x - pad), max(0, y - pad)
            x1, y1 = min(width, x + w + pad), min(height, y + h + pad)
            patch = image_bgr[y0:y1, x0:x1]
            if patch.size == 0:
                out.append(None)
                continue
            code = cv2.COLOR_GRAY2RGB if patch.ndim == 2 else cv2.COLOR_BGR2RGB
            rgb = np.ascontiguousarray(cv2.cvtColor(patch, code))
            location = [(y - y0, x - x0 + w, y - y0 + h, x - x0)]  # (top, right, bottom, left)
            found = self._api.face_encodings(rgb, location, num_jitters=self.num_jitters, model=self.model)
            self.calls += 1
            out.append(np.asarray(found[0], np.float32) if found else None)
        return out


@dataclass
class Person:
    """One person: a number that is never reused and a few encodings of their face."""

    number: int
    gallery: list[np.ndarray] = field(default_factory=list)

    def distance(self, encoding: np.ndarray) -> float:
        if not self.gallery:
            return float("inf")
        return float(np.min(np.linalg.norm(np.stack(self.gallery) - encoding, axis=1)))


class PersonRegistry:
    """Everyone seen so far. ``gallery_size`` encodings are kept per person (the first and the latest)."""

    def __init__(self, match_tolerance: float = MATCH_TOLERANCE, keep_tolerance: float = KEEP_TOLERANCE,
                 gallery_size: int = 8) -> None:
        self.match_tolerance = match_tolerance
        self.keep_tolerance = keep_tolerance
        self.gallery_size = max(2, int(gallery_size))
        self._people: dict[int, Person] = {}
        self._next = 1

    def __len__(self) -> int:
        return len(self._people)

    def new_number(self) -> int:
        """A fresh person number (also for faces seen without an encoding)."""
        number = self._next
        self._next += 1
        return number

    def add(self, number: int, encoding: np.ndarray | None) -> None:
        """Remember ``encoding`` for person ``number`` (keeping the first one and the newest ones)."""
        if encoding is None:
            return
        person = self._people.setdefault(number, Person(number))
        if person.gallery and person.distance(encoding) < 0.15:
            return  # nearly the same as one already kept: adds nothing
        person.gallery.append(encoding)
        if len(person.gallery) > self.gallery_size:
            del person.gallery[1]  # the first stays as the anchor; the oldest of the rest goes

    def distance(self, number: int, encoding: np.ndarray) -> float:
        person = self._people.get(number)
        return person.distance(encoding) if person else float("inf")

    def distances(self, encoding: np.ndarray) -> dict[int, float]:
        """Person number -> distance of ``encoding`` to that person's nearest kept encoding."""
        return {number: person.distance(encoding) for number, person in self._people.items()}

    def reset(self) -> None:
        self._people.clear()
        self._next = 1


def scene_signature(image_bgr: np.ndarray) -> np.ndarray:
    """A 16x16 grey thumbnail (float32) of a frame: cheap to compare for scene cuts."""
    grey = image_bgr if image_bgr.ndim == 2 else cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
    return cv2.resize(grey, (16, 16), interpolation=cv2.INTER_AREA).astype(np.float32)


def is_scene_cut(previous: np.ndarray | None, current: np.ndarray, threshold: float = 28.0) -> bool:
    """True when two signatures differ by more than ``threshold`` grey levels on average."""
    if previous is None or previous.shape != current.shape:
        return previous is not None
    return float(np.mean(np.abs(previous - current))) > threshold
