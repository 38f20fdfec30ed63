"""The main window's output controller: Snapshot and Record.

A snapshot is the annotated frame at full size (drawn by the one overlay renderer), written to a
temporary name and renamed. A recording is done by the worker (every processed frame, even those the view
skipped): per-face CSV rows flushed each frame, plus an optional annotated video beside the CSV. That video
never replaces the source being recorded, and replaces another existing file only when the user says so.
Everything the controller touches is given to its constructor.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from PyQt5.QtCore import QObject
from PyQt5.QtWidgets import QAbstractButton, QCheckBox, QFileDialog, QMessageBox, QStatusBar, QWidget

from app.core.errors import OutputError
from app.core.recording import check_outputs, free_video_path
from app.core.sources import SourceKind, SourceSpec
from app.gui.errors import dialogs_enabled, show_error
from app.gui.settings import AppSettings
from app.gui.video_view import VideoView
from app.workers.camera_worker import CameraWorker

logger = logging.getLogger(__name__)


class OutputController(QObject):
    """Snapshot and Record; ``current_source`` says what is playing (to never record over it)."""

    def __init__(self, window: QWidget, worker: CameraWorker, settings: AppSettings, *, view: VideoView,
                 status_bar: QStatusBar, record_button: QAbstractButton, record_video_check: QCheckBox,
                 current_source: Callable[[], SourceSpec | None]) -> None:
        super().__init__(window)
        self.window = window
        self.worker = worker
        self.settings = settings
        self.view = view
        self.status_bar = status_bar
        self.record_button = record_button
        self.record_video_check = record_video_check
        self._current_source = current_source
        record_button.toggled.connect(self._on_record_button_toggled)

    # ------------------------------------------------------------------------------------- snapshot

    def save_snapshot(self, path: str | Path) -> Path | None:
        """Save the annotated frame to ``path`` (format from its suffix, .png by default); None if none."""
        image = self.view.annotated_image()
        if image is None:
            show_error(self.window, "Nothing to snapshot yet: start a source or open a photo first.")
            return None
        target = Path(path)
        if not target.suffix:
            target = target.with_suffix(".png")
        tmp = target.with_name(f".{target.stem}.tmp-{os.getpid()}{target.suffix}")
        try:
            if not image.save(str(tmp)):
                raise OSError("the image could not be encoded or written")
            os.replace(tmp, target)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            show_error(self.window, f"Cannot save the snapshot {target}: {exc}")
            return None
        self.status_bar.showMessage(f"Snapshot saved: {target}", 6000)
        logger.info("snapshot saved to %s", target)
        return target

    def choose_snapshot(self) -> None:
        default = Path(self.settings.folder("snapshots")) / time.strftime("fer-snapshot-%Y%m%d-%H%M%S.png")
        path, _ = QFileDialog.getSaveFileName(self.window, "Save snapshot", str(default),
                                              "PNG image (*.png);;JPEG image (*.jpg)")
        if path:
            self.settings.remember_folder("snapshots", path)
            self.save_snapshot(path)

    # --------------------------------------------------------------------------------------- record

    def _source_file(self) -> Path | None:
        spec = self._current_source()
        return Path(str(spec.target)) if spec is not None and spec.kind is SourceKind.FILE else None

    def start_recording(self, csv_path: str | Path, video_path: str | Path | None = None,
                        overwrite_video: bool = False) -> None:
        """Record every processed frame's faces to ``csv_path`` (and the annotated video, if given)."""
        try:
            check_outputs(csv_path, video_path, self._source_file())
        except OutputError as exc:
            show_error(self.window, str(exc), "Not recording")
            self._set_checked(False)
            return
        self.worker.start_recording(str(csv_path), str(video_path) if video_path else None, overwrite_video)
        self._set_checked(True)

    def stop_recording(self) -> None:
        self.worker.stop_recording()

    def _set_checked(self, checked: bool) -> None:
        if self.record_button.isChecked() != checked:
            self.record_button.blockSignals(True)
            self.record_button.setChecked(checked)
            self.record_button.blockSignals(False)

    def video_path_for(self, csv_path: Path) -> tuple[Path, bool] | None:
        """Where the annotated video goes and whether it replaces a file; None when the user cancels.

        ``<csv>.mp4`` when free. Never the source: then a free name is taken without asking. Another
        existing file: the user is asked (replace it, or take a free name); without dialogs (tests,
        FER_STUDIO_NO_DIALOGS) a free name is taken.
        """
        wanted = csv_path.with_suffix(".mp4")
        source = self._source_file()
        free = free_video_path(csv_path, source)
        if free == wanted or source is not None and _same(wanted, source) or not dialogs_enabled():
            return free, False
        box = QMessageBox(QMessageBox.Question, "Replace the video?",
                          f"{wanted.name} exists already in {wanted.parent}.", QMessageBox.NoButton, self.window)
        replace = box.addButton("Replace it", QMessageBox.DestructiveRole)
        keep = box.addButton(f"Save as {free.name}", QMessageBox.AcceptRole)
        box.addButton(QMessageBox.Cancel)
        box.setDefaultButton(keep)
        box.exec_()
        if box.clickedButton() is replace:
            return wanted, True
        if box.clickedButton() is keep:
            return free, False
        return None

    def _on_record_button_toggled(self, checked: bool) -> None:
        if not checked:
            self.stop_recording()
            return
        default = Path(self.settings.folder("recordings")) / time.strftime("fer-record-%Y%m%d-%H%M%S.csv")
        path, _ = QFileDialog.getSaveFileName(self.window, "Record results to CSV", str(default), "CSV (*.csv)")
        if not path:
            self._set_checked(False)
            return
        self.settings.remember_folder("recordings", path)
        video: Path | None = None
        overwrite = False
        if self.record_video_check.isChecked():
            choice = self.video_path_for(Path(path))
            if choice is None:
                self._set_checked(False)
                return
            video, overwrite = choice
        self.start_recording(path, video, overwrite)
        if video is not None:
            self.status_bar.showMessage(f"Recording to {Path(path).name} and {video.name}", 6000)


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False
