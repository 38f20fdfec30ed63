"""The recognition worker: a QThread that owns the model, the pipeline and the video source.

The GUI talks to it only through its public methods (which queue a command; they never block) and its
signals (queued to the GUI thread). It never touches a widget.

- The model is loaded, warmed up and called in this thread; switching models loads the new one here and
  swaps it in only when it loaded, so a bad file reports ``model_failed`` and the old model keeps running.
- A :class:`~app.workers.capture.CaptureSession` reads the source into its own one-slot frame box; this
  thread processes only the newest frame, so a slow detector drops frames (counted) instead of adding
  latency. Each session has its own box: a capture thread that outlives its session (stuck in a driver or
  network read) can only post into a box nobody reads any more, never end or feed the next session.
- Every frame and photo runs through the one core path (:class:`~app.core.recognition.recognizer.Recognizer`
  and its :class:`~app.core.recognition.pipeline.Pipeline`); the recorded video is drawn by the one
  overlay renderer (:mod:`app.core.recognition.annotate`).
- End of file: loop or stop. Lost camera or stream: ``status`` says so and it reconnects with backoff.
- ``stop()``: request interruption, wake the loop, ``wait()``; the capture is released on the way out.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PyQt5.QtCore import QThread, pyqtSignal

from app.core.errors import FerStudioError, UnsafeModelError
from app.core.recognition.classifier import DEFAULT_UNCERTAIN_BELOW
from app.core.recognition.pipeline import Face
from app.core.recognition.recognizer import DEFAULT_VIDEO_SIZE, Recognizer
from app.core.sources import SourceSpec, VideoSource
from app.workers.capture import Captured, CaptureSession, SourceEvent

logger = logging.getLogger(__name__)


@dataclass
class FramePacket:
    """One processed frame (or photo) on its way to the GUI."""

    image: np.ndarray  # BGR uint8, owned by the packet
    faces: list[Face]  # with track ids for video
    timings: dict[str, float]  # ms per stage: capture, detect, align, classify, track, total; and "fps"
    frame_index: int = 0
    time_s: float = 0.0  # seconds since the source started
    dropped: int = 0  # frames dropped so far because processing was slower than the source
    source: str = ""
    photo_path: str | None = None
    labels: tuple[str, ...] = ()


class CameraWorker(QThread):
    """Recognition worker thread; see the module docstring. ``capture_factory`` is for tests."""

    frame_ready = pyqtSignal(object)  # FramePacket
    photo_ready = pyqtSignal(object)  # FramePacket with photo_path set
    model_loaded = pyqtSignal(object)  # ModelInfo, or None when the model was unloaded
    model_failed = pyqtSignal(str, str, bool)  # path, message, refused as unsafe (embeds Python code)
    source_started = pyqtSignal(str)  # description
    source_stopped = pyqtSignal(str)  # reason: "stopped", "ended" or an error message
    status = pyqtSignal(str)  # transient news for the status bar (reconnecting, ...)
    error = pyqtSignal(str)  # a problem the user should see (bad photo, detector unavailable, ...)

    def __init__(self, detector: str | None = None, *, align: bool = False, tta: bool | str = False,
                 smoothing: bool = True, video_size: int = DEFAULT_VIDEO_SIZE, min_face_size: int = 0,
                 min_score: float = 0.0, uncertain_below: float = DEFAULT_UNCERTAIN_BELOW,
                 max_pending: int | None = None,
                 capture_factory: Callable[[SourceSpec], Any] | None = None,
                 backoff: tuple[float, ...] | None = None, parent: Any = None) -> None:
        super().__init__(parent)
        self.setObjectName("CameraWorker")
        self._commands: queue.Queue[Callable[[], None]] = queue.Queue()
        # Plain data only here: the detector (dlib) and the model are created in this worker's thread.
        self._recognizer = Recognizer(detector, align=align, tta=tta, video_size=video_size,
                                      smoothing=smoothing, min_face_size=min_face_size, min_score=min_score,
                                      uncertain_below=uncertain_below)
        self._session: CaptureSession | None = None
        self._recorder: Any = None
        self._capture_factory = capture_factory
        self._backoff = backoff
        self._max_pending = max_pending
        self._pending = 0
        self._pending_lock = threading.Lock()
        self._fps = 0.0
        self._last_done = 0.0
        self.processed = 0  # frames processed in the current session (read by tests and the bench)

    # ----------------------------------------------------------------- public API (any thread, non-blocking)

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        self._commands.put(functools.partial(fn, *args))
        session = self._session
        if session is not None:
            session.box.wake()

    def set_model(self, path: str | None, trust: bool = False) -> None:
        """Load ``path`` (in the worker) and swap it in; None unloads (faces are then boxed only)."""
        self._post(self._cmd_set_model, path, trust)

    def set_detector(self, name: str) -> None:
        self._post(self._cmd_set_detector, name)

    def set_options(self, *, align: bool | None = None, tta: bool | str | None = None,
                    smoothing: bool | None = None, video_size: int | None = None,
                    min_face_size: int | None = None, min_score: float | None = None,
                    uncertain_below: float | None = None) -> None:
        """Change options between frames; ``video_size``: long side live frames are searched at (0 = full);
        ``min_face_size`` (px) and ``min_score`` (0..1) drop detections that are probably not faces;
        a face whose top probability is below ``uncertain_below`` is shown as uncertain."""
        self._post(self._cmd_set_options, dict(align=align, tta=tta, smoothing=smoothing,
                                               min_face_size=min_face_size, min_score=min_score,
                                               uncertain_below=uncertain_below), video_size)

    def open_source(self, spec: SourceSpec, loop: bool = True) -> None:
        """Start reading ``spec`` (a running source is closed first)."""
        self._post(self._cmd_open_source, spec, loop)

    def close_source(self) -> None:
        self._signal_capture_stop()
        self._post(self._cmd_close_source, "stopped")

    def _signal_capture_stop(self) -> None:
        # Tell the capture thread directly (a threading.Event is safe from any thread): it releases the
        # camera after its current read, even while this worker is busy with a slow frame or a model load.
        session = self._session
        if session is not None:
            session.request_stop()

    def process_image(self, image: np.ndarray | str, name: str | None = None) -> None:
        """Recognise one photo (a path, read in the worker, or a BGR array); answers with ``photo_ready``."""
        self._post(self._cmd_process_image, image, name)

    def start_recording(self, csv_path: str, video_path: str | None = None,
                        overwrite_video: bool = False) -> None:
        """Record every processed frame's faces to ``csv_path`` (and the annotated video to ``video_path``).

        Refused (``error``) when either would be written over the running source, or the video exists
        and ``overwrite_video`` is False.
        """
        self._post(self._cmd_start_recording, csv_path, video_path, overwrite_video)

    def stop_recording(self) -> None:
        self._post(self._cmd_stop_recording)

    def frame_shown(self) -> None:
        """The GUI finished drawing a packet; with ``max_pending`` set, the next one may be sent."""
        with self._pending_lock:
            self._pending = max(0, self._pending - 1)

    def stop(self, timeout_ms: int = 2000) -> bool:
        """Request interruption, wake the loop and wait; True when the thread has finished."""
        self.requestInterruption()
        self._signal_capture_stop()
        self._commands.put(lambda: None)
        session = self._session
        if session is not None:
            session.box.wake()
        if not self.isRunning():
            return True
        return self.wait(timeout_ms)

    # -------------------------------------------------------------------------------------- the loop

    def run(self) -> None:
        logger.debug("worker started")
        try:
            while not self.isInterruptionRequested():
                try:
                    self._step()
                except Exception as exc:  # a bug must not kill the thread: report it, stop the source
                    logger.exception("worker step failed")
                    self.error.emit(f"Recognition failed: {type(exc).__name__}: {exc}")
                    if self._session is not None:
                        self._end_session("error")
        finally:
            self._close_capture()
            self._cmd_stop_recording()
            logger.debug("worker finished")

    def _step(self) -> None:
        if self._session is None:
            try:
                self._commands.get(timeout=0.2)()
            except queue.Empty:
                pass
            return
        self._drain_commands()
        if self._session is None or self.isInterruptionRequested():
            return
        session = self._session
        item = session.box.take(timeout=0.1)
        if isinstance(item, Captured):
            self._process_frame(item)
        elif isinstance(item, SourceEvent):
            self._end_session(item.kind if item.kind == "ended" else item.message)
        elif not session.thread.is_alive():
            last = session.box.take(timeout=0)  # the capture thread's last word, if any
            self._end_session(last.message if isinstance(last, SourceEvent) and last.message
                              else "ended" if isinstance(last, SourceEvent) else "stopped")

    def _drain_commands(self) -> None:
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            command()

    def _run_guarded(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except FerStudioError as exc:
            self.error.emit(str(exc))
        except Exception as exc:  # a bug or an unexpected library error: report, keep running
            logger.exception("%s failed", what)
            self.error.emit(f"{what} failed: {type(exc).__name__}: {exc}")
        return None

    # ---------------------------------------------------------------------------------------- commands

    def _cmd_set_model(self, path: str | None, trust: bool) -> None:
        if path is None:
            self._recognizer.unload()
            self.model_loaded.emit(None)
            return
        self.status.emit(f"Loading model {Path(path).name}…")
        try:
            info = self._recognizer.load(path, trust=trust)
        except FerStudioError as exc:
            self.model_failed.emit(str(path), str(exc), isinstance(exc, UnsafeModelError))
            return
        except Exception as exc:
            logger.exception("loading %s failed", path)
            self.model_failed.emit(str(path), f"{path}: {type(exc).__name__}: {exc}", False)
            return
        self.model_loaded.emit(info)

    def _cmd_set_detector(self, name: str) -> None:
        self._run_guarded(f"detector {name}", lambda: self._recognizer.set_detector(name))

    def _cmd_set_options(self, options: dict[str, Any], video_size: int | None) -> None:
        self._run_guarded("changing options", lambda: self._recognizer.set_options(**options))
        if video_size is not None:
            self._run_guarded("changing the detection size",
                              lambda: self._recognizer.set_video_size(video_size))

    def _cmd_open_source(self, spec: SourceSpec, loop: bool) -> None:
        self._close_capture()
        kwargs: dict[str, Any] = {"loop": loop, "realtime": True, "capture_factory": self._capture_factory}
        if self._backoff:
            kwargs["backoff"] = self._backoff
        session = CaptureSession(VideoSource(spec, **kwargs), self.source_started.emit, self.status.emit)
        self._recognizer.reset_tracks()
        self.processed = 0
        self._fps = 0.0
        self._last_done = 0.0
        self._session = session
        session.start()

    def _cmd_close_source(self, reason: str) -> None:
        if self._session is not None:
            self._end_session(reason)

    def _cmd_process_image(self, image: np.ndarray | str, name: str | None) -> None:
        def work() -> None:
            start = time.perf_counter()
            if isinstance(image, str):
                from app.core.images import read_image

                bgr = read_image(image)
            else:
                bgr = image
            read_ms = (time.perf_counter() - start) * 1000
            result = self._recognizer.process_photo(bgr)
            timings = dict(result.timings, capture=read_ms)
            self.photo_ready.emit(FramePacket(
                image=bgr, faces=result.faces, timings=timings,
                photo_path=name or (image if isinstance(image, str) else ""),
                labels=self._recognizer.labels))
        self._run_guarded("recognising the photo", work)

    def _cmd_start_recording(self, csv_path: str, video_path: str | None, overwrite_video: bool) -> None:
        from app.core.recording import ResultRecorder, check_outputs
        from app.core.sources import SourceKind

        self._cmd_stop_recording()
        session = self._session
        fps = session.source.fps if session is not None else 30.0
        source = (str(session.spec.target) if session is not None and session.spec.kind is SourceKind.FILE
                  else None)

        def start() -> ResultRecorder:
            check_outputs(csv_path, video_path, source)
            return ResultRecorder(csv_path, self._recognizer.labels, video_path=video_path, fps=fps or 30.0,
                                  annotate=self._recognizer.annotate, overwrite_video=overwrite_video)

        self._recorder = self._run_guarded("starting the recording", start)
        if self._recorder is not None:
            self.status.emit(f"Recording to {csv_path}")

    def _cmd_stop_recording(self) -> None:
        if self._recorder is not None:
            recorder, self._recorder = self._recorder, None
            self._run_guarded("closing the recording", recorder.close)
            self.status.emit(f"Recording saved: {recorder.csv_path} ({recorder.frames} frames)")

    # ------------------------------------------------------------------------------------------ frames

    def _process_frame(self, item: Captured) -> None:
        session = self._session
        assert session is not None
        time_s = item.t - session.started
        result = self._recognizer.process_frame(item.image, time_s)
        now = time.perf_counter()
        faces = result.faces
        timings = dict(result.timings, capture=item.capture_ms)
        timings["latency"] = (time.monotonic() - item.t) * 1000
        if self._last_done:
            instant = 1.0 / max(1e-6, now - self._last_done)
            self._fps = instant if self._fps == 0.0 else 0.9 * self._fps + 0.1 * instant
        self._last_done = now
        timings["fps"] = self._fps
        self.processed += 1
        if self._recorder is not None:
            try:
                self._recorder.write(time_s, item.index, faces, item.image)
            except Exception as exc:  # a full disk, a codec problem: stop recording, keep recognising
                logger.exception("recording failed")
                self.error.emit(f"Recording stopped: {exc}")
                self._cmd_stop_recording()
        if self._max_pending is not None:
            with self._pending_lock:
                if self._pending >= self._max_pending:
                    return  # the GUI is behind: skip showing this one (it was recorded)
                self._pending += 1
        self.frame_ready.emit(FramePacket(
            image=item.image, faces=faces, timings=timings, frame_index=item.index, time_s=time_s,
            dropped=session.box.dropped, source=session.spec.describe(), labels=self._recognizer.labels))

    def _close_capture(self) -> float:
        """Stop the capture thread and release the source; returns the seconds it took."""
        session, self._session = self._session, None
        if session is None:
            return 0.0
        spent = session.close()
        with self._pending_lock:
            self._pending = 0
        return spent

    def _end_session(self, reason: str) -> None:
        spent = self._close_capture()
        logger.info("source stopped (%s) in %.3f s", reason, spent)
        self.source_stopped.emit(reason)
