"""One capture session: a thread that reads a camera, file or stream into the session's own frame box.

Qt-free. The camera worker starts a :class:`CaptureSession` per source and takes frames from its ``box``;
a session that is replaced keeps its own box, so a capture thread that outlives it (stuck in a driver or
network read) can only post into a box nobody reads any more, never feed or end the next session. Its
``on_started``/``on_status`` callbacks are silent once the session was asked to stop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.core.errors import SourceError
from app.core.sources import EndOfStream, SourceLost, SourceSpec, VideoSource
from app.workers.frame_box import FrameBox

logger = logging.getLogger(__name__)

#: How long closing waits for the capture thread to leave its current read before giving up on it.
JOIN_TIMEOUT_S = 1.5


@dataclass
class Captured:
    """One frame as read: the image, its index in the source, when it was read, how long the read took."""

    image: np.ndarray
    index: int
    t: float  # time.monotonic() when read
    capture_ms: float


@dataclass
class SourceEvent:
    """The capture thread's last word: "ended" (end of file) or "failed" (with a message for the user)."""

    kind: str
    message: str = ""


class CaptureSession:
    """Reads ``source`` in a daemon thread into ``box`` (newest frame only) until stopped, ended or failed."""

    def __init__(self, source: VideoSource, on_started: Callable[[str], None],
                 on_status: Callable[[str], None]) -> None:
        self.source = source
        self.spec: SourceSpec = source.spec
        self.box: FrameBox[Any] = FrameBox()
        self.stop_event = threading.Event()
        self.started = time.monotonic()
        self._on_started = on_started
        self._on_status = on_status
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"capture {self.spec.describe()}")

    def start(self) -> None:
        self.started = time.monotonic()
        self.thread.start()

    def request_stop(self) -> None:
        """Ask the thread to stop after its current read (safe from any thread)."""
        self.stop_event.set()

    def close(self) -> float:
        """Stop the thread and release the source; returns the seconds it took."""
        start = time.monotonic()
        self.stop_event.set()
        self.thread.join(timeout=JOIN_TIMEOUT_S)
        if self.thread.is_alive():  # blocked in a driver or network read; it releases when it returns
            logger.warning("capture of %s did not stop within %.1f s", self.spec.describe(), JOIN_TIMEOUT_S)
        else:
            self.source.release()
        return time.monotonic() - start

    def _status(self, text: str) -> None:
        if not self.stop_event.is_set():  # a session already replaced says nothing to the window
            self._on_status(text)

    def _run(self) -> None:
        spec = self.spec
        try:
            self.source.open()
        except SourceError as exc:
            self.box.put(SourceEvent("failed", str(exc)))
            return
        if not self.stop_event.is_set():
            self._on_started(spec.describe())
        try:
            self._read_frames()
        except Exception as exc:  # a decoder or driver error: report it as the end of this source
            logger.exception("capture of %s failed", spec.describe())
            self.box.put(SourceEvent("failed", f"{spec.describe()} failed: {type(exc).__name__}: {exc}"))
        finally:
            self.source.release()

    def _read_frames(self) -> None:
        source, spec, stop = self.source, self.spec, self.stop_event
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                frame = source.read()
            except EndOfStream:
                self.box.put(SourceEvent("ended"))
                return
            except SourceLost as exc:
                self._status(f"{exc} Reconnecting…")
                if not source.reconnect(stop.is_set, lambda n, delay: self._status(
                        f"{spec.describe()} lost; reconnecting in {delay:g} s (attempt {n})…")):
                    return
                self._status(f"{spec.describe()} reconnected.")
                continue
            except SourceError as exc:
                self.box.put(SourceEvent("failed", str(exc)))
                return
            self.box.put(Captured(frame, source.frame_index, time.monotonic(), (time.perf_counter() - t0) * 1000))
