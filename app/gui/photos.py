"""The main window's photo controller: open files or folders and browse them as a batch.

Photos are recognised by the worker (which owns the model) and come back through ``photo_ready``; the
controller shows them through the ``show_packet`` callback it was given, and stops a running source
through ``stop_source`` before it shows a photo. Everything it touches is given to its constructor.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from PyQt5.QtCore import QObject
from PyQt5.QtWidgets import QFileDialog, QLabel, QPushButton, QWidget

from app.core.labels import IMAGE_EXTENSIONS
from app.gui.errors import show_error
from app.gui.settings import AppSettings
from app.gui.video_view import VideoView
from app.workers.camera_worker import CameraWorker, FramePacket

logger = logging.getLogger(__name__)


class PhotoController(QObject):
    """Opens photos and folders, steps through a batch, and shows each recognised photo.

    ``is_live`` says whether a live source is running (a photo answer that arrives then is dropped).
    """

    def __init__(self, window: QWidget, worker: CameraWorker, settings: AppSettings, *, view: VideoView,
                 perf_label: QLabel, batch_bar: QWidget, batch_label: QLabel, prev_button: QPushButton,
                 next_button: QPushButton, show_packet: Callable[[FramePacket], None],
                 stop_source: Callable[[], None], is_live: Callable[[], bool]) -> None:
        super().__init__(window)
        self.window = window
        self.worker = worker
        self.settings = settings
        self.view = view
        self.perf_label = perf_label
        self.batch_bar = batch_bar
        self.batch_label = batch_label
        self.prev_button = prev_button
        self.next_button = next_button
        self._show_packet = show_packet
        self._stop_source = stop_source
        self._is_live = is_live
        self.batch: list[Path] = []
        self.index = 0
        worker.photo_ready.connect(self._on_worker_photo_ready)
        prev_button.clicked.connect(self._on_prev_button_clicked)
        next_button.clicked.connect(self._on_next_button_clicked)

    def open_paths(self, paths: Sequence[str | Path]) -> None:
        """Open photos and folders (a folder, or several files, becomes a browsable batch)."""
        files: list[Path] = []
        for p in map(Path, paths):
            if p.is_dir():
                files.extend(sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS))
            elif p.is_file():
                files.append(p)
        if not files:
            show_error(self.window, "No photos found there (looked for " + ", ".join(IMAGE_EXTENSIONS) + ").")
            return
        self._stop_source()
        self.batch, self.index = files, 0
        self.settings.remember_folder("photos", str(files[0]))
        self._show_current()

    def clear(self) -> None:
        """A live source took over: forget the batch."""
        self.batch = []
        self.batch_bar.setVisible(False)

    def rerun(self) -> None:
        """Recognise the shown photo again (the detector or an option changed)."""
        if self.batch and not self._is_live():
            self._show_current()

    def _show_current(self) -> None:
        path = self.batch[self.index]
        self.batch_bar.setVisible(len(self.batch) > 1)
        self.batch_label.setText(f"{self.index + 1} / {len(self.batch)} — {path.name}")
        self.prev_button.setEnabled(self.index > 0)
        self.next_button.setEnabled(self.index < len(self.batch) - 1)
        self.view.set_message(f"Recognising {path.name}…")
        self.worker.process_image(str(path))

    def _on_prev_button_clicked(self) -> None:
        if self.index > 0:
            self.index -= 1
            self._show_current()

    def _on_next_button_clicked(self) -> None:
        if self.index < len(self.batch) - 1:
            self.index += 1
            self._show_current()

    def _on_worker_photo_ready(self, packet: FramePacket) -> None:
        if self._is_live():
            return  # a live source took over meanwhile
        self._show_packet(packet)
        n = len(packet.faces)
        self.view.set_message("" if n else "No face found in this photo.")
        t = packet.timings
        self.perf_label.setText(f"{Path(packet.photo_path or '').name}: {n} face{'s' if n != 1 else ''} | "
                                f"detect {t.get('detect', 0):.1f} · classify {t.get('classify', 0):.1f} ms")

    def choose_photos(self) -> None:
        patterns = " ".join(f"*{e}" for e in IMAGE_EXTENSIONS)
        paths, _ = QFileDialog.getOpenFileNames(self.window, "Open photos", self.settings.folder("photos"),
                                                f"Images ({patterns});;All files (*)")
        if paths:
            self.open_paths(paths)

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.window, "Open a folder of photos",
                                                  self.settings.folder("photos"))
        if folder:
            self.open_paths([folder])
