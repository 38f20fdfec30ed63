"""Photos in the main window (a mixin): open files or folders, browse a batch, drag and drop.

Photos are recognised by the worker (which owns the model) and come back through ``photo_ready``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from PyQt5.QtGui import QDragEnterEvent, QDropEvent
from PyQt5.QtWidgets import QFileDialog

from app.core.labels import IMAGE_EXTENSIONS
from app.core.model_io import MODEL_SUFFIXES
from app.core.sources import SourceSpec
from app.gui.errors import show_error
from app.gui.source_picker import VIDEO_EXTENSIONS
from app.workers.camera_worker import FramePacket

logger = logging.getLogger(__name__)


class PhotoMixin:
    """Photo and batch slots for :class:`app.gui.main_window.MainWindow`."""

    view: Any
    worker: Any
    settings: Any
    perf_label: Any
    batch_bar: Any
    batch_label: Any
    prev_button: Any
    next_button: Any
    _running: bool
    _selected: int | None
    _batch: list[Path]
    _batch_index: int


    def open_paths(self, paths: Sequence[str | Path]) -> None:
        """Open photos and folders (a folder, or several files, becomes a browsable batch)."""
        files: list[Path] = []
        for p in map(Path, paths):
            if p.is_dir():
                files.extend(sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS))
            elif p.is_file():
                files.append(p)
        if not files:
            show_error(self, "No photos found there (looked for " + ", ".join(IMAGE_EXTENSIONS) + ").")
            return
        self.stop_source()
        self._running = False
        self._batch, self._batch_index = files, 0
        self.settings.remember_folder("photos", str(files[0]))
        self._show_batch_item()

    def open_photo(self, path: str | Path) -> None:
        self.open_paths([path])

    def _show_batch_item(self) -> None:
        path = self._batch[self._batch_index]
        self.batch_bar.setVisible(len(self._batch) > 1)
        self.batch_label.setText(f"{self._batch_index + 1} / {len(self._batch)} — {path.name}")
        self.prev_button.setEnabled(self._batch_index > 0)
        self.next_button.setEnabled(self._batch_index < len(self._batch) - 1)
        self.view.set_message(f"Recognising {path.name}…")
        self.worker.process_image(str(path))

    def _rerun_photo(self) -> None:
        if self._batch and not self._running:
            self._show_batch_item()

    def _on_prev_button_clicked(self) -> None:
        if self._batch_index > 0:
            self._batch_index -= 1
            self._show_batch_item()

    def _on_next_button_clicked(self) -> None:
        if self._batch_index < len(self._batch) - 1:
            self._batch_index += 1
            self._show_batch_item()

    def _on_worker_photo_ready(self, packet: FramePacket) -> None:
        if self._running:
            return  # a live source took over meanwhile
        self._selected = None
        self._show_packet(packet)
        n = len(packet.faces)
        self.view.set_message("" if n else "No face found in this photo.")
        t = packet.timings
        self.perf_label.setText(f"{Path(packet.photo_path or '').name}: {n} face{'s' if n != 1 else ''} | "
                                f"detect {t.get('detect', 0):.1f} · classify {t.get('classify', 0):.1f} ms")

    def _on_action_open_photo_triggered(self) -> None:
        patterns = " ".join(f"*{e}" for e in IMAGE_EXTENSIONS)
        paths, _ = QFileDialog.getOpenFileNames(self, "Open photos", self.settings.folder("photos"),
                                                f"Images ({patterns});;All files (*)")
        if paths:
            self.open_paths(paths)

    def _on_action_open_folder_triggered(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of photos",  # type: ignore[arg-type]
                                                  self.settings.folder("photos"))
        if folder:
            self.open_paths([folder])

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if not paths:
            return
        event.acceptProposedAction()
        first = Path(paths[0])
        if len(paths) == 1 and first.suffix.lower() in MODEL_SUFFIXES:
            self.use_model(str(first))
        elif len(paths) == 1 and first.suffix.lower() in VIDEO_EXTENSIONS:
            self.start_source(SourceSpec.file(first))
        else:
            self.open_paths(paths)
