"""The model part of the main window (a mixin): picker, recent models, model info, training dialog.

Models are loaded by the worker, in its own thread; a file that fails to load leaves the current model
running and says why. ``use_model(path)`` is the public entry point (the training dialog's "Use this model"
is connected to it).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PyQt5.QtCore import Qt, pyqtSlot
from PyQt5.QtWidgets import QFileDialog, QMessageBox

from app.core.model_io import MODEL_SUFFIXES, bundled_models, default_model_path
from app.gui.errors import dialogs_enabled, show_error
from app.workers.recognition import ModelInfo

logger = logging.getLogger(__name__)

NO_MODEL_TEXT = "No model loaded — choose one. Faces are boxed without labels until then."


class ModelMixin:
    """Model slots for :class:`app.gui.main_window.MainWindow`."""

    worker: Any
    settings: Any
    model_info: ModelInfo | None
    _loading_model: str | None
    model_info_label: Any
    model_combo: Any
    menu_recent_models: Any
    status_bar: Any
    bars: Any
    timeline: Any


    def _load_initial_model(self, model: str | None) -> None:
        remembered = self.settings.get_str("model/path", "")
        default = default_model_path()
        for candidate in (model, remembered if remembered and Path(remembered).is_file() else None,
                          str(default) if default else None):
            if candidate:
                self.use_model(candidate)
                return
        self.model_info_label.setText(NO_MODEL_TEXT)

    @pyqtSlot(str)
    def use_model(self, path: str, trust: bool = False) -> None:
        """Load ``path`` into the worker (also while a video runs); the training dialog calls this.

        ``trust`` allows models that embed Python code (asked for after a refusal, never by default).
        """
        self._loading_model = str(path)
        self.model_info_label.setText(f"Loading {Path(path).name}…")
        self.worker.set_model(str(path), trust)

    def _refresh_recent_models(self) -> None:
        recent = self.settings.recent_models()
        self.model_combo.clear()
        self.menu_recent_models.clear()
        for path in recent:
            self.model_combo.addItem(Path(path).name, path)
            self.model_combo.setItemData(self.model_combo.count() - 1, path, Qt.ToolTipRole)
            action = self.menu_recent_models.addAction(path)
            action.triggered.connect(lambda _checked=False, p=path: self.use_model(p))
        self.menu_recent_models.setEnabled(bool(recent))
        # The bundled models (a fast default for video, a more accurate one for photos) are always offered.
        known = {Path(p).resolve() for p in recent}
        for bundled in bundled_models():
            if bundled.resolve() not in known:
                self.model_combo.addItem(f"{bundled.name} (bundled)", str(bundled.resolve()))
                self.model_combo.setItemData(self.model_combo.count() - 1, str(bundled), Qt.ToolTipRole)
        current = self.model_info.path if self.model_info else None
        if current:
            self.model_combo.setCurrentIndex(max(0, self.model_combo.findData(str(Path(current).resolve()))))

    def _on_worker_model_loaded(self, info: ModelInfo | None) -> None:
        self._loading_model = None
        self.model_info = info
        if info is None:
            self.model_info_label.setText(NO_MODEL_TEXT)
            return
        self.settings.set("model/path", str(Path(info.path).resolve()))
        self.settings.add_recent_model(info.path)
        self._refresh_recent_models()
        h, w = info.input_size
        colour = "grey" if info.channels == 1 else "RGB"
        self.model_info_label.setText(
            f"<b>{Path(info.path).name}</b><br>input {w}×{h} {colour}, {info.normalization}<br>"
            f"labels: {', '.join(info.labels)}")
        self.model_info_label.setToolTip(info.path)
        self.bars.set_labels(info.labels)
        self.timeline.set_labels(info.labels)
        self.status_bar.showMessage(f"Model loaded: {Path(info.path).name}", 5000)

    def _on_worker_model_failed(self, path: str, message: str, unsafe: bool) -> None:
        self._loading_model = None
        keep = f"Still using {Path(self.model_info.path).name}." if self.model_info else NO_MODEL_TEXT
        self.model_info_label.setText(f"Could not load {Path(path).name}. {keep}")
        if unsafe and dialogs_enabled():
            answer = QMessageBox.question(
                self, "Trust this model?", f"{message}\n\nLoad it anyway? Only do so if you trust where the "
                "file came from: its code runs on this computer.", QMessageBox.Yes | QMessageBox.No,
                QMessageBox.No)
            if answer == QMessageBox.Yes:
                self.use_model(path, trust=True)
            return
        show_error(self, f"{message}\n\n{keep}", "Model not loaded")

    def _on_model_combo_activated(self, index: int) -> None:
        path = self.model_combo.itemData(index)
        if path:
            self.use_model(path)

    def _on_browse_model_button_clicked(self) -> None:
        patterns = " ".join(f"*{s}" for s in MODEL_SUFFIXES)
        path, _ = QFileDialog.getOpenFileName(self, "Choose a model", self.settings.folder("models"),
                                              f"Keras models ({patterns});;All files (*)")
        if path:
            self.settings.remember_folder("models", path)
            self.use_model(path)

    def _on_train_button_clicked(self) -> None:
        try:
            from app.gui.training_dialog import TrainingDialog
        except ImportError as exc:
            show_error(self, f"The training dialog is not available in this build ({exc}).")
            return
        dialog = getattr(self, "_training_dialog", None)
        if dialog is None:
            dialog = TrainingDialog(self, settings=self.settings.qs)
            dialog.modelReady.connect(self.use_model)  # "Use this model"
            self._training_dialog = dialog
        dialog.show()
        dialog.raise_()
        dialog.activateWindow()
