"""Snapshot and Record for the main window (a mixin: it uses the window's widgets, worker and settings).

A snapshot is the annotated frame at full size, written to a temporary name and renamed. A recording is
done by the worker (every processed frame, even those the view skipped): per-face CSV rows flushed each
frame, plus an optional annotated video.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from PyQt5.QtWidgets import QFileDialog

from app.gui.errors import show_error

logger = logging.getLogger(__name__)


class OutputMixin:
    """Snapshot and Record slots for :class:`app.gui.main_window.MainWindow`."""

    view: Any
    worker: Any
    settings: Any
    status_bar: Any
    record_button: Any
    record_video_check: Any
    _running: bool

    def save_snapshot(self, path: str | Path) -> Path | None:
        """Save the annotated frame to ``path`` (format from its suffix, .png by default); None if none."""
        image = self.view.annotated_image()
        if image is None:
            show_error(self, "Nothing to snapshot yet: start a source or open a photo first.")  # type: ignore[arg-type]
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
            show_error(self, f"Cannot save the snapshot {target}: {exc}")  # type: ignore[arg-type]
            return None
        self.status_bar.showMessage(f"Snapshot saved: {target}", 6000)
        logger.info("snapshot saved to %s", target)
        return target

    def _on_snapshot_button_clicked(self) -> None:
        default = Path(self.settings.folder("snapshots")) / time.strftime("fer-snapshot-%Y%m%d-%H%M%S.png")
        path, _ = QFileDialog.getSaveFileName(self, "Save snapshot", str(default),  # type: ignore[arg-type]
                                              "PNG image (*.png);;JPEG image (*.jpg)")
        if path:
            self.settings.remember_folder("snapshots", path)
            self.save_snapshot(path)

    def start_recording(self, csv_path: str | Path, video_path: str | Path | None = None) -> None:
        """Record every processed frame's faces to ``csv_path`` (and the annotated video, if given)."""
        self.worker.start_recording(str(csv_path), str(video_path) if video_path else None)
        if not self.record_button.isChecked():
            self.record_button.blockSignals(True)
            self.record_button.setChecked(True)
            self.record_button.blockSignals(False)

    def stop_recording(self) -> None:
        self.worker.stop_recording()

    def _on_record_button_toggled(self, checked: bool) -> None:
        if not checked:
            self.stop_recording()
            return
        default = Path(self.settings.folder("recordings")) / time.strftime("fer-record-%Y%m%d-%H%M%S.csv")
        path, _ = QFileDialog.getSaveFileName(self, "Record results to CSV", str(default),  # type: ignore[arg-type]
                                              "CSV (*.csv)")
        if not path:
            self.record_button.setChecked(False)
            return
        self.settings.remember_folder("recordings", path)
        video = str(Path(path).with_suffix(".mp4")) if self.record_video_check.isChecked() else None
        self.start_recording(path, video)
