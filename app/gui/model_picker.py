"""The main window's model controller: model box, recent models, model info, the training dialog.

Models are loaded by the worker, in its own thread; a file that fails to load leaves the current model
running and says why. ``use_model(path)`` is the public entry point (the training dialog's "Use this model"
is connected to it). Everything it touches is given to its constructor.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from PyQt5.QtCore import QObject, Qt, pyqtSignal, pyqtSlot
from PyQt5.QtWidgets import QComboBox, QFileDialog, QLabel, QMenu, QMessageBox, QStatusBar, QWidget

from app.core.model_io import MODEL_SUFFIXES, bundled_models, default_model_path
from app.core.recognition.recognizer import ModelInfo
from app.gui.errors import dialogs_enabled, show_error
from app.gui.settings import AppSettings
from app.workers.camera_worker import CameraWorker

logger = logging.getLogger(__name__)

NO_MODEL_TEXT = "No model loaded — choose one. Faces are boxed without labels until then."
#: How the model box names a model's own test-time augmentation.
TTA_TEXT = {"none": "none", "flip": "flip", "crops": "ten crops"}


class LabelledChart(Protocol):
    """A chart that shows one value per class (the probability bars, the timeline)."""

    def set_labels(self, labels: Sequence[str]) -> None: ...


class ModelController(QObject):
    """Loads models into the worker and shows what is loaded; owns the training dialog once opened."""

    model_changed = pyqtSignal(object)  # ModelInfo, or None when no model is loaded

    def __init__(self, window: QWidget, worker: CameraWorker, settings: AppSettings, *, info_label: QLabel,
                 combo: QComboBox, recent_menu: QMenu, status_bar: QStatusBar,
                 charts: Sequence[LabelledChart]) -> None:
        super().__init__(window)
        self.window = window
        self.worker = worker
        self.settings = settings
        self.info_label = info_label
        self.combo = combo
        self.recent_menu = recent_menu
        self.status_bar = status_bar
        self.charts = list(charts)
        self.info: ModelInfo | None = None
        self.loading: str | None = None
        self.training_dialog: Any = None
        worker.model_loaded.connect(self._on_worker_model_loaded)
        worker.model_failed.connect(self._on_worker_model_failed)
        combo.activated.connect(self._on_combo_activated)

    def load_initial(self, model: str | None) -> None:
        """``model`` if given, else the remembered model if it still exists, else the bundled default."""
        remembered = self.settings.get_str("model/path", "")
        default = default_model_path()
        for candidate in (model, remembered if remembered and Path(remembered).is_file() else None,
                          str(default) if default else None):
            if candidate:
                self.use_model(candidate)
                return
        self.info_label.setText(NO_MODEL_TEXT)

    @pyqtSlot(str)
    def use_model(self, path: str, trust: bool = False) -> None:
        """Load ``path`` into the worker (also while a video runs); the training dialog calls this.

        ``trust`` allows models that embed Python code (asked for after a refusal, never by default).
        """
        self.loading = str(path)
        self.info_label.setText(f"Loading {Path(path).name}…")
        self.worker.set_model(str(path), trust)

    def refresh_recent(self) -> None:
        recent = self.settings.recent_models()
        self.combo.clear()
        self.recent_menu.clear()
        for path in recent:
            self.combo.addItem(Path(path).name, path)
            self.combo.setItemData(self.combo.count() - 1, path, Qt.ToolTipRole)
            action = self.recent_menu.addAction(path)
            action.triggered.connect(lambda _checked=False, p=path: self.use_model(p))
        self.recent_menu.setEnabled(bool(recent))
        # The bundled models (a fast default for video, a more accurate one for photos) are always offered.
        known = {Path(p).resolve() for p in recent}
        for bundled in bundled_models():
            if bundled.resolve() not in known:
                self.combo.addItem(f"{bundled.name} (bundled)", str(bundled.resolve()))
                self.combo.setItemData(self.combo.count() - 1, str(bundled), Qt.ToolTipRole)
        current = self.info.path if self.info else None
        if current:
            self.combo.setCurrentIndex(max(0, self.combo.findData(str(Path(current).resolve()))))

    def _on_worker_model_loaded(self, info: ModelInfo | None) -> None:
        self.loading = None
        self.info = info
        if info is None:
            self.info_label.setText(NO_MODEL_TEXT)
            self.model_changed.emit(None)
            return
        self.settings.set("model/path", str(Path(info.path).resolve()))
        self.settings.add_recent_model(info.path)
        self.refresh_recent()
        h, w = info.input_size
        colour = "grey" if info.channels == 1 else "RGB"
        self.info_label.setText(
            f"<b>{Path(info.path).name}</b><br>input {w}×{h} {colour}, {info.normalization}, runs in "
            f"{info.precision}; its own test-time augmentation: {TTA_TEXT.get(info.own_tta, info.own_tta)}<br>"
            f"labels: {', '.join(info.labels)}")
        self.info_label.setToolTip(info.path)
        for chart in self.charts:
            chart.set_labels(info.labels)
        self.status_bar.showMessage(f"Model loaded: {Path(info.path).name}", 5000)
        self.model_changed.emit(info)

    def _on_worker_model_failed(self, path: str, message: str, unsafe: bool) -> None:
        self.loading = None
        keep = f"Still using {Path(self.info.path).name}." if self.info else NO_MODEL_TEXT
        self.info_label.setText(f"Could not load {Path(path).name}. {keep}")
        if unsafe and dialogs_enabled():
            answer = QMessageBox.question(
                self.window, "Trust this model?", f"{message}\n\nLoad it anyway? Only do so if you trust "
                "where the file came from: its code runs on this computer.", QMessageBox.Yes | QMessageBox.No,
                QMessageBox.No)
            if answer == QMessageBox.Yes:
                self.use_model(path, trust=True)
            return
        show_error(self.window, f"{message}\n\n{keep}", "Model not loaded")

    def _on_combo_activated(self, index: int) -> None:
        path = self.combo.itemData(index)
        if path:
            self.use_model(path)

    def browse(self) -> None:
        patterns = " ".join(f"*{s}" for s in MODEL_SUFFIXES)
        path, _ = QFileDialog.getOpenFileName(self.window, "Choose a model", self.settings.folder("models"),
                                              f"Keras models ({patterns});;All files (*)")
        if path:
            self.settings.remember_folder("models", path)
            self.use_model(path)

    def open_training_dialog(self) -> None:
        from app.gui.training_dialog import TrainingDialog

        if self.training_dialog is None:
            self.training_dialog = TrainingDialog(self.window, settings=self.settings.qs)
            self.training_dialog.modelReady.connect(self.use_model)  # "Use this model"
        self.training_dialog.show()
        self.training_dialog.raise_()
        self.training_dialog.activateWindow()
