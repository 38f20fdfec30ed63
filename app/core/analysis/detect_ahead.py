"""Face detection of the next frames on worker threads, while the current frame is classified.

Detection is most of the time a frame costs (dlib's HOG, OpenCV's Haar), and both release the GIL, so
two detector threads keep two cores busy where one thread would leave one idle. Each worker thread has
its own detector (neither library's detectors are safe to share between threads). Results come back in
frame order; at most ``depth`` frames wait, so memory stays flat.

The pipeline then runs with a :class:`GivenDetections` detector that hands it each frame's detections,
so every later step (face filter, alignment, classification, tracking) is the one path's own.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from app.core.analysis.video import DecodedFrame

logger = logging.getLogger(__name__)


class GivenDetections:
    """A stand-in for ``original``: returns the detections it was given for the frame being processed."""

    def __init__(self, original: Any) -> None:
        self.original = original
        self.name: str = original.name
        self.detections: list[Any] = []

    def detect(self, image_bgr: np.ndarray) -> list[Any]:
        detections, self.detections = self.detections, []
        return detections


class DetectAhead:
    """Run ``make_detector()``'s detectors on ``workers`` threads, ``depth`` frames ahead of the consumer."""

    def __init__(self, make_detector: Callable[[], Any], workers: int = 2, depth: int = 4) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.make_detector = make_detector
        self.workers = int(workers)
        self.depth = max(self.workers, int(depth))
        self._local = threading.local()

    def _detect(self, image: np.ndarray) -> list[Any]:
        detector = getattr(self._local, "detector", None)
        if detector is None:
            detector = self._local.detector = self.make_detector()
        return detector.detect(image)

    def run(self, frames: Iterable[DecodedFrame]) -> Iterator[tuple[DecodedFrame, list[Any]]]:
        """(frame, detections) in the order of ``frames``."""
        pending: deque[tuple[DecodedFrame, Future[list[Any]]]] = deque()
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="analysis-detect")
        try:
            for frame in frames:
                pending.append((frame, pool.submit(self._detect, frame.image)))
                if len(pending) >= self.depth:
                    done, future = pending.popleft()
                    yield done, future.result()
            while pending:
                done, future = pending.popleft()
                yield done, future.result()
        finally:
            for _, future in pending:
                future.cancel()
            pool.shutdown(wait=True)
