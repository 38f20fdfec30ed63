"""Run ``fer-studio train --events jsonl`` in a child process and turn its output into Qt signals.

Training never runs inside the GUI process: a crash there (a segfault in a native library, the out-of-memory
killer) must not take the window down. The child prints one JSON object per line on stdout and its log on
stderr; :class:`~app.workers.training_protocol.JsonLinesParser` cuts stdout into events and
:class:`TrainingProcess` emits one typed signal per event.

Stop sends SIGTERM (``QProcess.terminate``), which the engine treats like Ctrl+C: it finishes the current
batch, keeps the best checkpoint and exits. If it stays silent for a grace period before exiting it is killed;
each line it still prints (its "stop requested" log, the last validation, checkpoint, report) shows it is
answering and restarts the grace period, up to a hard limit.
"""

from __future__ import annotations

import logging
from collections import deque
from pathlib import Path

from PyQt5.QtCore import QElapsedTimer, QObject, pyqtSignal

from app.core.tf_quiet import is_noise
from app.workers.child_process import PROJECT_ROOT, JsonLinesChild  # noqa: F401 - PROJECT_ROOT re-exported
from app.workers.training_protocol import (  # noqa: F401 - re-exported for callers of this module
    IMBALANCE_FLAGS,
    JsonLinesParser,
    ParsedLine,
    TextLineBuffer,
    TrainingConfig,
    TrainingOutcome,
    build_command,
)

logger = logging.getLogger(__name__)

#: Silence allowed after Stop before the run is killed. After its last batch the engine validates, saves and
#: scores the best checkpoint; on two busy cores with FER2013's 3,589 validation images that took 8-12 s.
DEFAULT_STOP_TIMEOUT_MS = 20_000
#: However much it still reports, a stopping run is killed this long after Stop.
STOP_HARD_LIMIT_MS = 120_000


class TrainingProcess(JsonLinesChild):
    """A ``fer-studio train`` child process; one signal per event it prints.

    Lives in (and must only be used from) the GUI thread: QProcess delivers its output through the event loop,
    so nothing here blocks.
    """

    runStarted = pyqtSignal(object)  # the "start" event dict
    batchProgress = pyqtSignal(object)  # "batch"
    epochEnded = pyqtSignal(object)  # "epoch_end"
    checkpointSaved = pyqtSignal(object)  # "checkpoint"
    reportReady = pyqtSignal(object)  # "report"
    trainingDone = pyqtSignal(object)  # "done"
    errorReported = pyqtSignal(str)  # the "error" event's message
    eventReceived = pyqtSignal(object)  # every event, including ones this version does not know
    logLine = pyqtSignal(str)  # stderr lines and stdout noise
    finished = pyqtSignal(object)  # TrainingOutcome, once per run

    _SIGNALS = {
        "start": "runStarted", "batch": "batchProgress", "epoch_end": "epochEnded",
        "checkpoint": "checkpointSaved", "report": "reportReady", "done": "trainingDone",
    }

    def __init__(self, parent: QObject | None = None, stop_timeout_ms: int = DEFAULT_STOP_TIMEOUT_MS) -> None:
        super().__init__(parent)
        self.stop_timeout_ms = stop_timeout_ms
        self._stop_clock = QElapsedTimer()
        self._reset(None)

    def _reset(self, out: str | None) -> None:
        self._stderr_tail: deque[str] = deque(maxlen=20)
        self._out = out
        self._stopping = False
        self._killed_after_timeout = False
        self._done: dict | None = None
        self._error: str | None = None
        self._checkpoint: str | None = None
        self._reported = False

    # -- public API ------------------------------------------------------------------------------------------

    def start(self, config: TrainingConfig, python: str | None = None) -> list[str]:
        """Start a run; returns the command line. Raises RuntimeError if one is already running."""
        if self.is_running():
            raise RuntimeError("a training process is already running")
        command = build_command(config, python)
        self._reset(str(Path(config.out).expanduser().resolve()))
        self._launch(command, "training")
        return command

    def is_stopping(self) -> bool:
        return self._stopping and self.is_running()

    def pid(self) -> int:
        """The child's process id (0 when none is running)."""
        return int(self._process.processId())

    @property
    def last_checkpoint(self) -> str | None:
        """The newest checkpoint this run reported, else the output folder's best.h5 if one exists."""
        if self._checkpoint and Path(self._checkpoint).is_file():
            return self._checkpoint
        if self._out and (Path(self._out) / "best.h5").is_file():
            return str(Path(self._out) / "best.h5")
        return None

    def stop(self) -> None:
        """Ask the run to stop after the current batch (SIGTERM); kill it if it has not ended in time.

        A second call while it is stopping kills it at once.
        """
        if not self.is_running():
            return
        if self._stopping:
            logger.warning("killing the training process on a second stop request")
            self._killed_after_timeout = True
            self._process.kill()
            return
        self._stopping = True
        self._stop_clock.start()
        self._process.terminate()
        self._kill_timer.start(self.stop_timeout_ms)

    def shutdown(self, timeout_ms: int = 5_000) -> None:
        """Stop and wait (blocking): for application exit, when the event loop is about to go away.

        Shorter than the interactive grace period: a window must not hang on exit, and best.h5 is written
        atomically, so a kill can cost the last epoch's report but never the best checkpoint.
        """
        if not self.is_running():
            return
        self._stopping = True
        self._process.terminate()
        if not self._process.waitForFinished(timeout_ms):
            self._killed_after_timeout = True
            self._process.kill()
            self._process.waitForFinished(3000)

    # -- JsonLinesChild ------------------------------------------------------------------------------------

    def _ended(self, exit_code: int, crashed: bool) -> None:
        self._emit_outcome(exit_code, crashed)

    def _failed_to_start(self, message: str) -> None:
        self._error = f"could not start the training process: {message}"
        self._emit_outcome(-1, False)

    def _on_killTimer_timeout(self) -> None:
        if self.is_running():
            self._log(f"The training process did not stop in time ({self._stop_clock.elapsed() / 1000:.0f} s); "
                      "killing it.")
            self._killed_after_timeout = True
            self._process.kill()

    # -- helpers ---------------------------------------------------------------------------------------------

    def _log(self, line: str) -> None:
        self._keep_alive()
        if is_noise(line):  # TensorFlow's start-up notices: nothing the user can act on
            return
        self._stderr_tail.append(line)
        self.logLine.emit(line)

    def _keep_alive(self) -> None:
        """Output while stopping shows the run is still answering (validating, saving): give it more time."""
        if self._kill_timer.isActive():
            left = STOP_HARD_LIMIT_MS - self._stop_clock.elapsed()
            self._kill_timer.start(max(1, min(self.stop_timeout_ms, left)))

    def _dispatch(self, item: ParsedLine) -> None:
        if isinstance(item, str):
            self.logLine.emit(item)
            return
        self._keep_alive()
        kind = item["event"]
        if kind == "checkpoint" and item.get("path"):
            self._checkpoint = str(item["path"])
        elif kind == "done":
            self._done = item
            if item.get("best_model"):
                self._checkpoint = str(item["best_model"])
        elif kind == "error":
            self._error = str(item.get("message") or "unknown error")
            self.errorReported.emit(self._error)
        name = self._SIGNALS.get(kind)
        if name is not None:
            getattr(self, name).emit(item)
        elif kind != "error":
            logger.debug("unknown training event %r", kind)
        self.eventReceived.emit(item)

    def _emit_outcome(self, exit_code: int, crashed: bool) -> None:
        if self._reported:
            return
        self._reported = True
        outcome = TrainingOutcome(
            exit_code=int(exit_code), crashed=crashed, stopped=self._stopping,
            killed_after_timeout=self._killed_after_timeout, done=self._done, error=self._error,
            last_checkpoint=self.last_checkpoint, stderr_tail=tuple(self._stderr_tail),
        )
        log = logger.info if outcome.ok else logger.warning
        log("training process ended: %s", outcome.describe().replace("\n", " | "))
        self.finished.emit(outcome)
