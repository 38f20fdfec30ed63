"""Video sources behind one class: a camera index, a video file or a stream URL.

:class:`VideoSource` opens any of them with ``cv2.VideoCapture`` and reads BGR frames. A file that ends
raises :class:`EndOfStream` (or starts again when ``loop`` is set); a camera or stream that stops
delivering raises :class:`SourceLost`, after which :meth:`VideoSource.reconnect` retries with backoff.
:func:`list_cameras` probes a few camera indices quickly and never hangs when there are none.
"""

from __future__ import annotations

import enum
import glob
import logging
import os
import re
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import cv2
import numpy as np

from app.core.errors import SourceError
from app.core.package_data import bundled_file

logger = logging.getLogger(__name__)

STREAM_SCHEMES: tuple[str, ...] = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")
#: Seconds to wait before each reconnection attempt; the last value repeats.
DEFAULT_BACKOFF: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)
#: Where the repository's demo clip lives.
DEMO_CLIP = bundled_file("resources", "demo_clip.mp4")


class SourceKind(str, enum.Enum):
    """What a source reads from."""

    CAMERA = "camera"
    FILE = "file"
    STREAM = "stream"


class EndOfStream(Exception):
    """A video file has no more frames (and looping is off). Not an error."""


class SourceLost(SourceError):
    """A camera or stream that was open stopped delivering frames; try :meth:`VideoSource.reconnect`."""


@dataclass(frozen=True)
class SourceSpec:
    """Which source to open: ``SourceSpec.parse("0")``, ``parse("clip.mp4")``, ``parse("rtsp://...")``."""

    kind: SourceKind
    target: int | str

    @classmethod
    def camera(cls, index: int) -> SourceSpec:
        return cls(SourceKind.CAMERA, int(index))

    @classmethod
    def file(cls, path: str | os.PathLike[str]) -> SourceSpec:
        return cls(SourceKind.FILE, str(path))

    @classmethod
    def stream(cls, url: str) -> SourceSpec:
        return cls(SourceKind.STREAM, url.strip())

    @classmethod
    def parse(cls, text: str) -> SourceSpec:
        """A camera index ("0"), a URL with a stream scheme, or a file path; "kind:target" (as saved) too."""
        text = text.strip()
        for kind in SourceKind:
            prefix = f"{kind.value}:"
            if text.startswith(prefix) and not text.startswith(f"{kind.value}://"):
                rest = text[len(prefix):]
                return cls.camera(int(rest)) if kind is SourceKind.CAMERA else cls(kind, rest)
        if text.isdigit():
            return cls.camera(int(text))
        match = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://", text)
        if match and match.group(1).lower() in STREAM_SCHEMES:
            return cls.stream(text)
        if match and match.group(1).lower() == "file":
            return cls.file(text[len("file://"):])
        return cls.file(text)

    def to_text(self) -> str:
        """A string :meth:`parse` turns back into this spec (for settings)."""
        return f"{self.kind.value}:{self.target}"

    def describe(self) -> str:
        if self.kind is SourceKind.CAMERA:
            return f"camera {self.target}"
        if self.kind is SourceKind.FILE:
            return f"video file {Path(str(self.target)).name}"
        return f"stream {self.target}"

    @property
    def is_live(self) -> bool:
        """Cameras and streams are live (reconnect on loss); files end (or loop)."""
        return self.kind is not SourceKind.FILE


@contextmanager
def quiet_opencv() -> Iterator[None]:
    """Silence OpenCV's own warnings (a missing camera index prints several) for the duration."""
    try:
        old = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    except AttributeError:  # very old builds lack cv2.utils.logging
        yield
        return
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(old)


def _camera_candidates(max_index: int) -> list[int]:
    if sys.platform.startswith("linux"):
        # Only indices with a device node; probing absent ones is pointless (and noisy).
        found = sorted(int(m.group(1)) for p in glob.glob("/dev/video*")
                       if (m := re.match(r"/dev/video(\d+)$", p)))
        return [i for i in found if i < max_index]
    return list(range(max_index))


def _probe(index: int) -> bool:
    with quiet_opencv():
        cap = cv2.VideoCapture(index)
        try:
            return bool(cap.isOpened()) and bool(cap.read()[0])
        finally:
            cap.release()


def list_cameras(max_index: int = 6, timeout_s: float = 1.5) -> list[int]:
    """Indices of cameras that open and deliver a frame; [] quickly when there are none.

    Each probe runs in a daemon thread with a time limit, so a driver that blocks cannot hang the caller.
    """
    found: list[int] = []
    deadline = time.monotonic() + timeout_s
    for index in _camera_candidates(max_index):
        result: list[bool] = []
        probe = threading.Thread(target=lambda i=index, out=result: out.append(_probe(i)), daemon=True,
                                 name=f"camera-probe-{index}")
        probe.start()
        probe.join(max(0.0, deadline - time.monotonic()))
        if probe.is_alive():
            logger.warning("camera %d did not answer within %.1f s; skipped", index, timeout_s)
            break
        if result and result[0]:
            found.append(index)
    logger.info("cameras found: %s", found or "none")
    return found


CaptureFactory = Callable[["SourceSpec"], Any]


def open_capture(spec: SourceSpec, open_timeout_ms: int = 5000, read_timeout_ms: int = 3000) -> Any:
    """A ``cv2.VideoCapture`` for ``spec`` (maybe not opened; the caller checks ``isOpened()``)."""
    with quiet_opencv():
        if spec.kind is SourceKind.CAMERA:
            return cv2.VideoCapture(int(spec.target))
        if spec.kind is SourceKind.STREAM:
            # Time limits so a dead host or a stalled stream cannot block the reader for long.
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, open_timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                      read_timeout_ms]
            return cv2.VideoCapture(str(spec.target), cv2.CAP_FFMPEG, params)
        return cv2.VideoCapture(str(spec.target))


class VideoSource:
    """One open camera, file or stream; reads BGR frames.

    ``loop``: a file starts again at its end instead of raising :class:`EndOfStream`.
    ``realtime``: frames of a file are delivered at the file's frame rate (as a player would), not as
    fast as they decode. ``capture_factory`` replaces :func:`open_capture` (tests use fakes).
    """

    def __init__(self, spec: SourceSpec, *, loop: bool = False, realtime: bool = False,
                 backoff: Sequence[float] = DEFAULT_BACKOFF,
                 capture_factory: CaptureFactory | None = None) -> None:
        self.spec = spec
        self.loop = loop
        self.realtime = realtime
        self.backoff = tuple(backoff) or DEFAULT_BACKOFF
        self._factory: CaptureFactory = capture_factory or open_capture
        self._cap: Any = None
        self.frame_index = 0  # frames delivered since open (keeps counting across loops and reconnects)
        self.fps = 0.0  # the source's nominal rate; 0.0 when unknown
        self._next_due = 0.0

    # ------------------------------------------------------------------------------------- open / close

    @property
    def is_open(self) -> bool:
        return self._cap is not None

    def open(self) -> None:
        """Open the source; raises SourceError with a message that says what to do."""
        self.release()
        spec = self.spec
        if spec.kind is SourceKind.FILE:
            path = Path(str(spec.target))
            if not path.is_file():
                raise SourceError(f"cannot open video file {path}: no such file.")
        cap = self._factory(spec)
        if cap is None or not cap.isOpened():
            if cap is not None:
                cap.release()
            raise SourceError(self._open_failure_message())
        self._cap = cap
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0.5 < fps < 500 else 0.0
        self._next_due = 0.0
        # A loop re-opens the file each time round: say so once, not every few seconds.
        logger.log(logging.DEBUG if self.frame_index else logging.INFO, "opened %s (%.1f fps)",
                   spec.describe(), self.fps)

    def _open_failure_message(self) -> str:
        spec = self.spec
        if spec.kind is SourceKind.CAMERA:
            if not list_cameras(timeout_s=0.5):
                return (f"no camera found (camera {spec.target} cannot be opened). Connect a camera, or "
                        "open a video file, a stream URL or the demo clip instead.")
            return f"cannot open camera {spec.target}: it may be in use by another program."
        if spec.kind is SourceKind.FILE:
            return (f"cannot open video file {spec.target}: not a video OpenCV can decode, or the file "
                    "is truncated.")
        return (f"cannot open stream {spec.target}: check the URL, the network and that the stream is "
                "running.")

    def release(self) -> None:
        """Close the capture (idempotent)."""
        if self._cap is not None:
            try:
                self._cap.release()
            finally:
                self._cap = None
                logger.debug("released %s", self.spec.describe())

    def __enter__(self) -> VideoSource:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    # ------------------------------------------------------------------------------------------ reading

    def read(self) -> np.ndarray:
        """The next frame (BGR uint8). Raises EndOfStream, SourceLost, or SourceError when not open."""
        if self._cap is None:
            raise SourceError(f"{self.spec.describe()} is not open.")
        ok, frame = self._cap.read()
        if not ok or frame is None:
            if not self.spec.is_live:
                if not self.loop:
                    raise EndOfStream(self.spec.describe())
                logger.debug("%s ended; looping", self.spec.describe())
                self.open()  # re-opening is more reliable than seeking to frame 0 across codecs
                assert self._cap is not None
                ok, frame = self._cap.read()
                if not ok or frame is None:
                    raise SourceError(f"cannot read video file {self.spec.target}: no frame could be "
                                      "decoded.")
            else:
                self.release()
                raise SourceLost(f"{self.spec.describe()} stopped delivering frames.")
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        self.frame_index += 1
        if self.realtime and not self.spec.is_live and self.fps:
            self._pace()
        return frame

    def _pace(self) -> None:
        now = time.monotonic()
        if self._next_due == 0.0 or now - self._next_due > 0.5:
            self._next_due = now  # first frame, or far behind (a slow consumer): do not rush to catch up
        else:
            time.sleep(max(0.0, self._next_due - now))
        self._next_due += 1.0 / self.fps

    def reconnect(self, should_stop: Callable[[], bool] = lambda: False,
                  on_attempt: Callable[[int, float], None] | None = None,
                  max_attempts: int | None = None) -> bool:
        """Re-open a lost source, waiting longer before each attempt (``backoff``).

        Returns True once open, False when ``should_stop()`` turned true or ``max_attempts`` ran out.
        The waits are sliced finely so a stop request is honoured within ~50 ms.
        """
        attempt = 0
        while max_attempts is None or attempt < max_attempts:
            delay = self.backoff[min(attempt, len(self.backoff) - 1)]
            attempt += 1
            if on_attempt is not None:
                on_attempt(attempt, delay)
            end = time.monotonic() + delay
            while time.monotonic() < end:
                if should_stop():
                    return False
                time.sleep(min(0.05, max(0.0, end - time.monotonic())))
            if should_stop():
                return False
            try:
                self.open()
                logger.info("reconnected to %s after %d attempt(s)", self.spec.describe(), attempt)
                return True
            except SourceError as exc:
                logger.info("reconnect attempt %d to %s failed: %s", attempt, self.spec.describe(), exc)
        return False
