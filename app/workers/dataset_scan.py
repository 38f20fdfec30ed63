"""Read a data set's classes and counts per split off the GUI thread.

Reading the full FER2013 CSV takes seconds, so :func:`app.core.dataset_summary.describe_dataset` runs in the global
thread pool. Each scan carries a request id: a window that has since asked about another path ignores the
stale answer instead of cancelling a read that cannot be interrupted anyway.
"""

from __future__ import annotations

import logging

from PyQt5.QtCore import QObject, QRunnable, QThreadPool, pyqtSignal

logger = logging.getLogger(__name__)


class DatasetScanSignals(QObject):
    """Results of a scan; created in the GUI thread, so slots of GUI-thread objects run there (queued)."""

    succeeded = pyqtSignal(int, str, object)  # request id, path, DatasetSummary
    failed = pyqtSignal(int, str, str)  # request id, path, message for the user


class DatasetScanTask(QRunnable):
    """One ``describe_dataset(path)`` call in a pool thread. Touches no widget."""

    def __init__(self, request_id: int, path: str, signals: DatasetScanSignals) -> None:
        super().__init__()
        self.request_id = request_id
        self.path = path
        self.signals = signals

    def run(self) -> None:
        # An exception escaping a QRunnable.run() aborts the whole application under PyQt5, so catch all.
        try:
            from app.core.dataset_summary import describe_dataset
            from app.core.errors import FerStudioError

            try:
                summary = describe_dataset(self.path)
            except FerStudioError as exc:
                self.signals.failed.emit(self.request_id, self.path, str(exc))
            else:
                self.signals.succeeded.emit(self.request_id, self.path, summary)
        except RuntimeError as exc:
            if "deleted" not in str(exc):  # the window went away meanwhile: nobody is waiting for the answer
                self._report_bug(exc)
        except Exception as exc:  # noqa: BLE001
            self._report_bug(exc)

    def _report_bug(self, exc: BaseException) -> None:
        logger.error("reading data set %s failed", self.path, exc_info=exc)
        try:
            self.signals.failed.emit(self.request_id, self.path, f"could not read {self.path}: {exc}")
        except RuntimeError:
            pass


class DatasetScanner(QObject):
    """Starts scans and forwards only the answer to the newest request."""

    succeeded = pyqtSignal(str, object)  # path, DatasetSummary
    failed = pyqtSignal(str, str)  # path, message

    def __init__(self, parent: QObject | None = None, pool: QThreadPool | None = None) -> None:
        super().__init__(parent)
        self._pool = pool or QThreadPool.globalInstance()
        self._latest = 0
        self._pending = 0

    def scan(self, path: str) -> None:
        """Read ``path`` in the background; an earlier scan still running is superseded."""
        self._latest += 1
        self._pending += 1
        # One unparented signals object per task, owned by the task: it outlives this scanner if the window
        # closes mid-read, and Qt drops its connections to a receiver that has been destroyed.
        signals = DatasetScanSignals()
        signals.succeeded.connect(self._on_signals_succeeded)
        signals.failed.connect(self._on_signals_failed)
        self._pool.start(DatasetScanTask(self._latest, path, signals))

    def is_busy(self) -> bool:
        return self._pending > 0

    def _on_signals_succeeded(self, request_id: int, path: str, summary: object) -> None:
        self._pending -= 1
        if request_id == self._latest:
            self.succeeded.emit(path, summary)

    def _on_signals_failed(self, request_id: int, path: str, message: str) -> None:
        self._pending -= 1
        if request_id == self._latest:
            self.failed.emit(path, message)
