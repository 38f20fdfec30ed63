"""Reading a whole video file for analysis: checks first, then frames decoded ahead in a reader thread.

:func:`probe_video` opens a file and decodes its first frame, so a photo, a text file, an empty or a
damaged video is refused with a message that says what is wrong before any output is created.
:class:`FrameReader` decodes in its own thread into a small bounded queue (decoding overlaps recognition,
and memory stays flat however long the video). Each frame carries the container's timestamp
(``CAP_PROP_POS_MSEC``), so variable-frame-rate videos get true times, and comes out upright: OpenCV
applies the rotation metadata of phone videos (``CAP_PROP_ORIENTATION_AUTO``); where a build does not,
the reader rotates the frames itself.
"""

from __future__ import annotations

import logging
import os
import queue
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from app.core.errors import SourceError
from app.core.sources import quiet_opencv

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES: frozenset[str] = frozenset({
    ".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts", ".mts",
    ".ogv",
})
_IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm"})
_ROTATIONS = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}


@dataclass(frozen=True)
class VideoInfo:
    """What a video file says about itself, and the size of its frames as delivered (upright)."""

    path: Path
    width: int
    height: int
    fps: float  # nominal frames per second; 0.0 when the file does not say
    frame_count: int  # the container's count (an estimate for some formats); 0 when unknown
    rotation: int  # degrees of rotation metadata (0, 90, 180, 270), already applied to the frames
    rotate_here: bool  # True when OpenCV did not apply the rotation and the reader does

    @property
    def duration_s(self) -> float:
        return self.frame_count / self.fps if self.fps and self.frame_count else 0.0


@dataclass
class DecodedFrame:
    """One frame: its index in the file (0-based), its time in seconds and the BGR pixels."""

    index: int
    time_s: float
    image: np.ndarray


def list_videos(paths: list[str]) -> list[tuple[str, Path | None, str | None]]:
    """(name shown, file, problem) per input: files as given, folders expanded to their video files."""
    jobs: list[tuple[str, Path | None, str | None]] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
            if not found:
                problem = (f"{given}: no video files in this folder "
                           f"(looked for {', '.join(sorted(VIDEO_SUFFIXES))}).")
                jobs.append((given, None, problem))
            jobs.extend((str(p), p, None) for p in found)
        else:
            jobs.append((given, path, None))
    return jobs


def quiet_ffmpeg() -> None:
    """Keep FFmpeg's own messages (a damaged file prints dozens) off the terminal: the reader reports.

    Takes effect only before OpenCV's first FFmpeg call in this process.
    """
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET


def _open(path: Path) -> Any:
    with quiet_opencv():
        cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        if not cap.isOpened():
            cap.release()
            cap = cv2.VideoCapture(str(path))
    if cap.isOpened() and hasattr(cv2, "CAP_PROP_ORIENTATION_AUTO"):
        cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
    return cap


def _rotation_meta(cap: Any) -> int:
    if not hasattr(cv2, "CAP_PROP_ORIENTATION_META"):
        return 0
    value = round(float(cap.get(cv2.CAP_PROP_ORIENTATION_META) or 0.0)) % 360
    return value if value in _ROTATIONS else 0


def _mp4_problem(path: Path) -> str | None:
    """For an MP4/MOV file OpenCV cannot open: what is wrong with its top-level boxes, if that shows."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(12)
            if len(head) < 12 or head[4:8] != b"ftyp":
                return None
            size, kinds, offset = path.stat().st_size, {}, 0
            while offset + 8 <= size:
                handle.seek(offset)
                length, kind = struct.unpack(">I4s", handle.read(8))
                if length == 1:
                    length = struct.unpack(">Q", handle.read(8))[0]
                if length < 8:
                    break
                kinds[kind] = length
                offset += length
    except OSError:
        return None
    if b"moov" not in kinds or offset > size:
        return ("the file is truncated: it stops before the end of its data and has no index (moov box), "
                "as when a recording is cut off; nothing in it can be decoded.")
    if kinds.get(b"mdat", 0) <= 16:
        return "the video has no frames (an empty recording)."
    return None


def probe_video(path: str | Path) -> VideoInfo:
    """Open ``path`` and decode its first frame; raises SourceError saying why it cannot be analysed."""
    path = Path(path)
    if not path.exists():
        raise SourceError(f"{path}: no such file.")
    if path.is_dir():
        raise SourceError(f"{path}: is a folder; give a video file, or the folder to analyse every video in it.")
    if path.stat().st_size == 0:
        raise SourceError(f"{path}: the file is empty (0 bytes), not a video.")
    if path.suffix.lower() in _IMAGE_SUFFIXES or cv2.haveImageReader(str(path)):
        raise SourceError(f"{path}: is a still image, not a video; label its faces with 'fer-studio predict'.")
    cap = _open(path)
    try:
        if not cap.isOpened():
            problem = _mp4_problem(path)
            raise SourceError(f"{path}: {problem}" if problem else
                              f"{path}: not a video OpenCV can decode (not a video file, an unknown format, or "
                              "a damaged one).")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        fps = fps if 0.5 < fps < 1000 else 0.0
        count = int(max(0.0, float(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0.0)))
        rotation = _rotation_meta(cap)
        # OpenCV (4.5+, FFmpeg backend) turns frames upright itself when auto-orientation is on; a
        # backend that reports the rotation but refuses the setting leaves it to us.
        auto = hasattr(cv2, "CAP_PROP_ORIENTATION_AUTO") and bool(cap.get(cv2.CAP_PROP_ORIENTATION_AUTO))
        rotate_here = bool(rotation) and not auto
        ok, frame = cap.read()
        if not ok or frame is None:
            if count == 0:
                raise SourceError(f"{path}: the video has no frames.")
            raise SourceError(f"{path}: no frame could be decoded (the file is truncated or damaged, or "
                              "uses a codec this OpenCV build lacks).")
    finally:
        cap.release()
    if rotate_here:
        frame = cv2.rotate(frame, _ROTATIONS[rotation])
    height, width = frame.shape[:2]
    return VideoInfo(path, width, height, fps, count, rotation, rotate_here)


class FrameReader:
    """Decode every ``every``-th frame of a probed video in a thread; iterate to get them in order.

    The queue holds at most ``queue_size`` frames, so a slow consumer makes the reader wait instead of
    filling memory. ``stop()`` (or a set ``stop_event``) ends the reader within one frame. After the
    iteration: ``frames_read`` (frames the file delivered, skipped ones included), ``error`` (a problem
    met mid-file, or None) and ``timestamps_regular`` (False for a variable frame rate).
    """

    def __init__(self, info: VideoInfo, every: int = 1, queue_size: int = 4,
                 stop_event: threading.Event | None = None) -> None:
        if every < 1:
            raise ValueError(f"every must be at least 1, got {every}")
        self.info = info
        self.every = int(every)
        self._queue: queue.Queue[DecodedFrame | None] = queue.Queue(maxsize=max(1, queue_size))
        self._external = stop_event  # the caller's: set means "stop the analysis"
        self._stop = threading.Event()  # ours: set when the consumer is done with this reader
        self._thread: threading.Thread | None = None
        self.frames_read = 0
        self.error: str | None = None
        self._deltas: list[float] = []
        self.timestamps_regular = True

    def stop(self) -> None:
        self._stop.set()

    def _stopping(self) -> bool:
        return self._stop.is_set() or (self._external is not None and self._external.is_set())

    def __iter__(self) -> Iterator[DecodedFrame]:
        self._thread = threading.Thread(target=self._run, name="analysis-reader", daemon=True)
        self._thread.start()
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    break
                yield item
        finally:
            self._stop.set()
            while self._thread.is_alive():  # unblock a reader waiting on a full queue, then let it end
                try:
                    self._queue.get(timeout=0.05)
                except queue.Empty:
                    pass
            self._thread.join()

    def _put(self, item: DecodedFrame | None) -> bool:
        while not self._stopping():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        cap = _open(self.info.path)
        try:
            self._read_all(cap)
        except Exception as exc:  # a decoder failure ends this video: reported, not raised
            logger.debug("reader failed on %s", self.info.path, exc_info=True)
            self.error = f"decoding stopped after {self.frames_read} frames ({type(exc).__name__}: {exc})."
        finally:
            cap.release()
            self._queue_end()

    def _queue_end(self) -> None:
        while True:
            try:
                self._queue.put(None, timeout=0.1)
                return
            except queue.Full:
                if self._stopping():
                    try:  # the consumer is gone or draining: make room for the end marker
                        self._queue.get_nowait()
                    except queue.Empty:
                        pass

    def _read_all(self, cap: Any) -> None:
        info = self.info
        rotate = _ROTATIONS.get(info.rotation) if info.rotate_here else None
        nominal = 1.0 / info.fps if info.fps else 0.0
        last_t: float | None = None
        index = 0
        with quiet_opencv():
            while not self._stopping():
                wanted = index % self.every == 0
                ok = cap.grab()
                if not ok:
                    break
                t = float(cap.get(cv2.CAP_PROP_POS_MSEC) or 0.0) / 1000.0
                if last_t is not None and t <= last_t and nominal:
                    t = last_t + nominal  # a container without usable timestamps: count frames instead
                if last_t is not None:
                    self._note_delta(t - last_t, nominal)
                last_t = t
                self.frames_read += 1
                if wanted:
                    ok, frame = cap.retrieve()
                    if not ok or frame is None:
                        break
                    if frame.ndim == 2:
                        frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
                    if rotate is not None:
                        frame = cv2.rotate(frame, rotate)
                    if not self._put(DecodedFrame(index, t, frame)):
                        return
                index += 1
        # MP4/MOV count their frames exactly; other containers estimate from the duration, so allow 2 %.
        shortfall = max(1, info.frame_count // 50)
        if info.frame_count and self.frames_read < info.frame_count - shortfall and not self._stopping():
            self.error = (f"the file ends after {self.frames_read} of its {info.frame_count} frames: it is "
                          "truncated or damaged; the frames before that were analysed.")

    def _note_delta(self, delta: float, nominal: float) -> None:
        # Compare each frame's duration with the nominal one; a few jitters are normal in any container.
        if nominal and abs(delta - nominal) > 0.25 * nominal:
            self._deltas.append(delta)
            if len(self._deltas) >= 3:
                self.timestamps_regular = False
            if len(self._deltas) > 16:
                del self._deltas[:8]
