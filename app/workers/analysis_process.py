"""Run ``fer-studio analyze --events jsonl`` in a child process and turn its output into Qt signals.

A whole-video analysis never runs in the GUI process (nor on its thread): a crash in a native decoder or
the model cannot take the window down, and the window stays responsive. The child prints one JSON object
per line (start, ready, video_start, progress, video_done, video_error, done); stderr is its log.
Cancel sends SIGTERM, which the command treats like Ctrl-C: it finishes the current frame, writes the
summary and report of what was done and exits; it is killed if it does not end within a grace period.
"""

from __future__ import annotations

import logging
import sys
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from PyQt5.QtCore import QObject, pyqtSignal

from app.core.tf_quiet import is_noise
from app.workers.child_process import JsonLinesChild

logger = logging.getLogger(__name__)
#: Time a cancelled analysis gets to write its summary and report before it is killed.
CANCEL_TIMEOUT_MS = 15_000


@dataclass(frozen=True)
class AnalysisRequest:
    """What to analyse and how: becomes ``fer-studio analyze`` arguments."""

    video: str
    out: str
    model: str | None = None
    detector: str | None = None
    tta: bool | str = False  # False/"none", True/"flip", "crops" or "own" (the model's own)
    every: int = 1
    annotated_video: bool = False
    detect_size: int | None = None
    min_face_size: int = 0
    min_score: float = 0.0
    align: bool = False
    uncertain_below: float | None = None  # None: the command's default

    def to_args(self) -> list[str]:
        args = ["analyze", self.video, "--out", self.out, "--events", "jsonl", "--every", str(self.every)]
        if self.model:
            args += ["--model", self.model]
        if self.detector:
            args += ["--detector", self.detector]
        tta = "flip" if self.tta is True else (self.tta or "none")
        if tta != "none":
            args += ["--tta", tta]
        if self.detect_size is not None:
            args += ["--detect-size", str(self.detect_size)]
        if self.min_face_size:
            args += ["--min-face-size", str(self.min_face_size)]
        if self.min_score:
            args += ["--min-score", f"{self.min_score:g}"]
        if self.uncertain_below is not None:
            args += ["--uncertain-below", f"{self.uncertain_below:g}"]
        if self.align:
            args.append("--align")
        if self.annotated_video:
            args.append("--annotated-video")
        return args


@dataclass
class AnalysisOutcome:
    """How a run ended: the ``video_done`` event (folder, files, status) or an error message."""

    exit_code: int
    cancelled: bool
    result: dict[str, Any] | None = None
    error: str | None = None
    log_tail: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.result is not None and self.error is None


class AnalysisProcess(JsonLinesChild):
    """One ``fer-studio analyze`` child at a time; lives in (and is used from) the GUI thread."""

    progress = pyqtSignal(object)  # the "progress" event dict
    ready = pyqtSignal(object)  # "ready": the model is loaded
    logLine = pyqtSignal(str)
    finished = pyqtSignal(object)  # AnalysisOutcome, once per run

    def __init__(self, parent: QObject | None = None, cancel_timeout_ms: int = CANCEL_TIMEOUT_MS) -> None:
        super().__init__(parent)
        self.cancel_timeout_ms = cancel_timeout_ms
        self._reset()

    def _reset(self) -> None:
        self._tail: deque[str] = deque(maxlen=20)
        self._result: dict[str, Any] | None = None
        self._error: str | None = None
        self._cancelled = False
        self._reported = False

    def start(self, request: AnalysisRequest, python: str | None = None) -> list[str]:
        """Start the child; returns its command line. Raises RuntimeError when one is running."""
        if self.is_running():
            raise RuntimeError("an analysis is already running")
        self._reset()
        command = [python or sys.executable, "-m", "app.cli", *request.to_args()]
        self._launch(command, "analysis")
        return command

    def cancel(self) -> None:
        """Ask the run to stop (it keeps what it did); kill it if it does not end in time."""
        if not self.is_running():
            return
        if self._cancelled:
            self._process.kill()
            return
        self._cancelled = True
        self._process.terminate()
        self._kill_timer.start(self.cancel_timeout_ms)

    def shutdown(self, timeout_ms: int = 3_000) -> None:
        """Cancel and wait (blocking), for when the window closes."""
        if not self.is_running():
            return
        self._cancelled = True
        self._process.terminate()
        if not self._process.waitForFinished(timeout_ms):
            self._process.kill()
            self._process.waitForFinished(2_000)

    # -- JsonLinesChild ------------------------------------------------------------------------------------

    def _ended(self, exit_code: int, crashed: bool) -> None:
        if self._result is None and self._error is None:
            self._error = (self._tail[-1] if self._tail else
                           f"the analysis process ended unexpectedly (exit code {exit_code}).")
        self._report(exit_code)

    def _failed_to_start(self, message: str) -> None:
        self._error = f"could not start the analysis process: {message}"
        self._report(-1)

    def _on_killTimer_timeout(self) -> None:
        if self.is_running():
            self._log("the analysis did not stop in time; killing it.")
            self._process.kill()

    # -- helpers ---------------------------------------------------------------------------------------------

    def _log(self, line: str) -> None:
        if is_noise(line):  # TensorFlow's start-up notices
            return
        self._tail.append(line)
        self.logLine.emit(line)

    def _dispatch(self, item: Any) -> None:
        if isinstance(item, str):
            self._log(item)
            return
        kind = item.get("event")
        if kind == "progress":
            self.progress.emit(item)
        elif kind == "ready":
            self.ready.emit(item)
        elif kind == "video_done":
            self._result = item
            if item.get("error"):
                self._log(str(item["error"]))
        elif kind == "video_error":
            self._error = str(item.get("message") or "the video could not be analysed.")

    def _report(self, exit_code: int) -> None:
        if self._reported:
            return
        self._reported = True
        self.finished.emit(AnalysisOutcome(int(exit_code), self._cancelled, self._result, self._error,
                                           list(self._tail)))
