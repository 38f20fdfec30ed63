"""The main window's recognition options: detector, video search size, face filter, align, TTA, smoothing,
and the probability below which a face is shown as uncertain.

Filled and restored from the settings before the worker exists (the worker starts with these values), then
attached to it: each change is forwarded to the worker and ``changed`` is called (the photo controller
re-runs the shown photo). Everything it touches is given to its constructor.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from PyQt5.QtCore import QObject
from PyQt5.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QSpinBox, QWidget

from app.core.recognition.classifier import DEFAULT_UNCERTAIN_BELOW, OWN_TTA, TTA_MODES
from app.core.recognition.detection import DEFAULT_DETECTOR, DETECTORS, detector_available
from app.core.recognition.recognizer import DEFAULT_VIDEO_SIZE, VIDEO_SIZES
from app.gui.settings import AppSettings
from app.workers.camera_worker import CameraWorker

logger = logging.getLogger(__name__)

#: The test-time augmentation choices (value sent to the worker, text shown), the model's own first.
TTA_CHOICES: tuple[tuple[str, str], ...] = (
    (OWN_TTA, "the model's own"),
    ("none", "none (fastest)"),
    ("flip", "flip"),
    ("crops", "ten crops (slow)"),
)

DETECTOR_NAMES: dict[str, str] = {
    "hog": "HOG (dlib)",
    "haar": "Haar (OpenCV)",
    "cnn": "CNN (dlib, slow)",
}


class RecognitionOptions(QObject):
    """Reads, remembers and forwards the recognition options of the main window's form."""

    def __init__(self, parent: QWidget, settings: AppSettings, *, detector_combo: QComboBox,
                 video_size_combo: QComboBox, min_face_spin: QSpinBox, min_score_spin: QDoubleSpinBox,
                 align_check: QCheckBox, tta_combo: QComboBox, smoothing_check: QCheckBox,
                 uncertain_spin: QDoubleSpinBox) -> None:
        super().__init__(parent)
        self.settings = settings
        self.detector_combo = detector_combo
        self.video_size_combo = video_size_combo
        self.min_face_spin = min_face_spin
        self.min_score_spin = min_score_spin
        self.align_check = align_check
        self.tta_combo = tta_combo
        self.smoothing_check = smoothing_check
        self.uncertain_spin = uncertain_spin
        self._worker: CameraWorker | None = None
        self._changed: Callable[[], None] = lambda: None
        self._fill()
        self._restore()

    def _fill(self) -> None:
        model = self.detector_combo.model()
        for name in sorted(DETECTORS, key=lambda n: n != DEFAULT_DETECTOR):  # the default first
            label = DETECTOR_NAMES.get(name, name) + (" — default" if name == DEFAULT_DETECTOR else "")
            self.detector_combo.addItem(label, name)
            why_not = detector_available(name)  # checks the libraries without importing dlib
            if why_not:  # grey it out and say why, rather than failing when picked
                item = model.item(self.detector_combo.count() - 1)
                item.setEnabled(False)
                item.setToolTip(why_not)
        for size in VIDEO_SIZES:
            self.video_size_combo.addItem(f"{size} px wide" if size else "full size (slowest)", size)
        for mode, label in TTA_CHOICES:
            self.tta_combo.addItem(label, mode)

    def _restore(self) -> None:
        s = self.settings
        index = self.detector_combo.findData(s.get_str("recognition/detector", DEFAULT_DETECTOR))
        self.detector_combo.setCurrentIndex(max(0, index))
        size = s.get_str("recognition/video_size", str(DEFAULT_VIDEO_SIZE))
        index = self.video_size_combo.findData(int(size) if size.isdigit() else DEFAULT_VIDEO_SIZE)
        self.video_size_combo.setCurrentIndex(max(0, index))
        self.min_face_spin.setValue(_number(s.get_str("recognition/min_face_size", "0"), int, 0))
        self.min_score_spin.setValue(_number(s.get_str("recognition/min_score", "0"), float, 0.0))
        self.align_check.setChecked(s.get_bool("recognition/align", False))
        tta = _tta_setting(s.get_str("recognition/tta", "own"))
        self.tta_combo.setCurrentIndex(max(0, self.tta_combo.findData(tta)))
        self.smoothing_check.setChecked(s.get_bool("recognition/smoothing", True))
        self.uncertain_spin.setValue(_number(s.get_str("recognition/uncertain_below", str(DEFAULT_UNCERTAIN_BELOW)),
                                             float, DEFAULT_UNCERTAIN_BELOW))

    def save(self) -> None:
        s = self.settings
        s.set("recognition/detector", self.detector_combo.currentData())
        s.set("recognition/video_size", self.video_size_combo.currentData())
        s.set("recognition/min_face_size", self.min_face_spin.value())
        s.set("recognition/min_score", self.min_score_spin.value())
        s.set("recognition/align", self.align_check.isChecked())
        s.set("recognition/tta", self.tta_combo.currentData())
        s.set("recognition/smoothing", self.smoothing_check.isChecked())
        s.set("recognition/uncertain_below", self.uncertain_spin.value())

    def worker_options(self) -> dict[str, Any]:
        """The CameraWorker's keyword arguments for the options shown."""
        return {"detector": self.detector_combo.currentData(), "align": self.align_check.isChecked(),
                "tta": self.tta_combo.currentData(), "smoothing": self.smoothing_check.isChecked(),
                "video_size": self.video_size_combo.currentData(), "min_face_size": self.min_face_spin.value(),
                "min_score": self.min_score_spin.value(), "uncertain_below": self.uncertain_spin.value()}

    def attach(self, worker: CameraWorker, changed: Callable[[], None]) -> None:
        """Forward every change to ``worker``; ``changed`` runs after each one that alters a photo's result."""
        self._worker, self._changed = worker, changed
        self.detector_combo.activated.connect(self._on_detector_combo_activated)
        self.video_size_combo.activated.connect(self._on_video_size_combo_activated)
        self.min_face_spin.valueChanged.connect(self._on_min_face_spin_valueChanged)
        self.min_score_spin.valueChanged.connect(self._on_min_score_spin_valueChanged)
        self.align_check.toggled.connect(self._on_align_check_toggled)
        self.tta_combo.activated.connect(self._on_tta_combo_activated)
        self.smoothing_check.toggled.connect(self._on_smoothing_check_toggled)
        self.uncertain_spin.valueChanged.connect(self._on_uncertain_spin_valueChanged)

    def _set(self, rerun: bool, **options: Any) -> None:
        if self._worker is not None:
            self._worker.set_options(**options)
        if rerun:
            self._changed()

    def _on_detector_combo_activated(self, index: int) -> None:
        if self._worker is not None:
            self._worker.set_detector(self.detector_combo.itemData(index))
        self._changed()

    def _on_video_size_combo_activated(self, index: int) -> None:
        self._set(False, video_size=self.video_size_combo.itemData(index))

    def _on_min_face_spin_valueChanged(self, value: int) -> None:
        self._set(True, min_face_size=value)

    def _on_min_score_spin_valueChanged(self, value: float) -> None:
        self._set(True, min_score=value)

    def _on_align_check_toggled(self, checked: bool) -> None:
        self._set(True, align=checked)

    def _on_tta_combo_activated(self, index: int) -> None:
        self._set(True, tta=self.tta_combo.itemData(index))

    def _on_smoothing_check_toggled(self, checked: bool) -> None:
        self._set(False, smoothing=checked)

    def _on_uncertain_spin_valueChanged(self, value: float) -> None:
        self._set(True, uncertain_below=value)


def _number(text: str, kind: Callable[[str], Any], default: Any) -> Any:
    """A remembered number, or ``default`` when the settings file holds something else."""
    try:
        return kind(text)
    except (TypeError, ValueError):
        logger.info("ignoring a bad remembered value %r", text)
        return default


def _tta_setting(text: str) -> str:
    """A remembered TTA choice; the yes/no of the former flip check box reads as flip / the model's own."""
    value = str(text).strip().lower()
    if value in ("true", "1"):
        return "flip"
    if value in (OWN_TTA, *TTA_MODES):
        return value
    return "own"
