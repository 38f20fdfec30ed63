"""The plumbing shared by the GUI's child processes (``fer-studio train`` / ``analyze --events jsonl``).

:class:`JsonLinesChild` owns the ``QProcess``: it starts ``python -m app.cli ...`` with unbuffered UTF-8
output and the project on ``PYTHONPATH``, cuts stdout into JSON events and stderr into lines, drains both
when the child ends, and keeps a single-shot kill timer. Subclasses say what an event, a log line, the end
of the run, a failed start and the kill timer mean (``_dispatch``, ``_log``, ``_ended``,
``_failed_to_start``, ``_on_killTimer_timeout``). Lives in, and is used from, the GUI thread only.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from PyQt5.QtCore import QObject, QProcess, QProcessEnvironment, QTimer

from app.workers.training_protocol import JsonLinesParser, ParsedLine, TextLineBuffer

logger = logging.getLogger(__name__)

#: Project root (the folder holding the ``app`` package), so ``python -m app.cli`` works from any folder.
PROJECT_ROOT = Path(__file__).resolve().parents[2]


class JsonLinesChild(QObject):
    """A child process printing one JSON event per line on stdout and its log on stderr."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._process = QProcess(self)
        self._process.readyReadStandardOutput.connect(self._on_process_readyReadStandardOutput)
        self._process.readyReadStandardError.connect(self._on_process_readyReadStandardError)
        self._process.finished.connect(self._on_process_finished)
        self._process.errorOccurred.connect(self._on_process_errorOccurred)
        self._kill_timer = QTimer(self)
        self._kill_timer.setSingleShot(True)
        self._kill_timer.timeout.connect(self._on_killTimer_timeout)
        self._stdout = JsonLinesParser()
        self._stderr = TextLineBuffer()

    def is_running(self) -> bool:
        return self._process.state() != QProcess.NotRunning

    def _launch(self, command: list[str], what: str) -> None:
        """Start ``command`` (its output parsers start afresh)."""
        self._stdout, self._stderr = JsonLinesParser(), TextLineBuffer()
        env = QProcessEnvironment.systemEnvironment()
        env.insert("PYTHONUNBUFFERED", "1")  # events must arrive as they happen, not when a buffer fills
        env.insert("PYTHONIOENCODING", "utf-8")
        path = env.value("PYTHONPATH", "")
        env.insert("PYTHONPATH", os.pathsep.join(p for p in (str(PROJECT_ROOT), path) if p))
        self._process.setProcessEnvironment(env)
        self._process.setWorkingDirectory(str(PROJECT_ROOT))
        logger.info("starting %s: %s", what, " ".join(command))
        self._process.start(command[0], command[1:])

    # -- to be given meaning by subclasses -------------------------------------------------------------------

    def _dispatch(self, item: ParsedLine) -> None:
        raise NotImplementedError

    def _log(self, line: str) -> None:
        raise NotImplementedError

    def _ended(self, exit_code: int, crashed: bool) -> None:
        raise NotImplementedError

    def _failed_to_start(self, message: str) -> None:
        raise NotImplementedError

    def _on_killTimer_timeout(self) -> None:
        raise NotImplementedError

    # -- QProcess slots --------------------------------------------------------------------------------------

    def _on_process_readyReadStandardOutput(self) -> None:
        for item in self._stdout.feed(bytes(self._process.readAllStandardOutput())):
            self._dispatch(item)

    def _on_process_readyReadStandardError(self) -> None:
        for line in self._stderr.feed(bytes(self._process.readAllStandardError())):
            self._log(line)

    def _on_process_finished(self, exit_code: int, exit_status: QProcess.ExitStatus) -> None:
        self._kill_timer.stop()
        # Whatever is still in the pipes belongs to this run; an unterminated last line counts too.
        self._on_process_readyReadStandardOutput()
        self._on_process_readyReadStandardError()
        for item in self._stdout.flush():
            self._dispatch(item)
        for line in self._stderr.flush():
            self._log(line)
        self._ended(exit_code, exit_status == QProcess.CrashExit)

    def _on_process_errorOccurred(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.FailedToStart:  # no finished() follows in this case
            self._failed_to_start(self._process.errorString())
