"""The main window: live video / photo recognition, model picker, live charts, snapshot and recording.

The form is ui/main_window.ui (layout only), loaded with ``uic.loadUi``; every signal is connected in
Python and slots are named ``_on_<widget>_<signal>``. All recognition runs in :class:`CameraWorker`. The
window owns the sources, the live frames and the recognition options; three small controllers, each given
exactly the widgets and collaborators it uses, own the rest: :class:`ModelController` (model box, recent
models, training dialog), :class:`PhotoController` (photos and batches) and :class:`OutputController`
(snapshot, record).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from PyQt5 import uic
from PyQt5.QtCore import QSettings, pyqtSignal
from PyQt5.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent
from PyQt5.QtWidgets import QLabel, QMainWindow, QMessageBox, QVBoxLayout, QWidget

from app.core.model_io import MODEL_SUFFIXES
from app.core.package_data import bundled_file
from app.core.recognition.recognizer import ModelInfo
from app.core.sources import SourceSpec, list_cameras
from app.gui.analysis_launcher import AnalysisLauncher
from app.gui.charts import EmotionTimeline, ProbabilityBars
from app.gui.errors import show_error
from app.gui.model_picker import NO_MODEL_TEXT, ModelController
from app.gui.options import RecognitionOptions
from app.gui.output import OutputController
from app.gui.photos import PhotoController
from app.gui.settings import AppSettings
from app.gui.source_picker import VIDEO_EXTENSIONS, SourcePicker
from app.gui.video_view import VideoView, find_face, largest_face_key
from app.workers.camera_worker import CameraWorker, FramePacket

__all__ = ["NO_MODEL_TEXT", "MainWindow"]

logger = logging.getLogger(__name__)

UI_FILE = bundled_file("ui", "main_window.ui")


class MainWindow(QMainWindow):
    """FER Studio's main window. ``model`` overrides the remembered model; ``settings`` is for tests."""

    cameras_found = pyqtSignal(list)

    def __init__(self, model: str | None = None, settings: QSettings | None = None, *,
                 probe_cameras: bool = True, worker: CameraWorker | None = None) -> None:
        super().__init__()
        uic.loadUi(str(UI_FILE), self)
        self.settings = AppSettings(settings)
        self._running = False
        self._source: SourceSpec | None = None
        self._selected: int | None = None
        self._last_status_update = 0.0
        self.frames_shown = 0

        self.view = VideoView()
        self._embed(self.video_container, self.view)
        self.bars = ProbabilityBars()
        self._embed(self.bars_container, self.bars)
        self.timeline = EmotionTimeline()
        self._embed(self.timeline_container, self.timeline)
        self.perf_label = QLabel("")
        self.status_bar.addPermanentWidget(self.perf_label)
        self.sources = SourcePicker(self.source_combo, self.settings, self)
        self.batch_bar.setVisible(False)
        self.view.set_message("Press Start to run the demo clip or a camera, or open / drop a photo.")
        self.main_splitter.setStretchFactor(0, 1)
        self.view_splitter.setStretchFactor(0, 3)
        self.view_splitter.setSizes([540, 230])
        self.options = RecognitionOptions(
            self, self.settings, detector_combo=self.detector_combo, video_size_combo=self.video_size_combo,
            min_face_spin=self.min_face_spin, min_score_spin=self.min_score_spin, align_check=self.align_check,
            uncertain_spin=self.uncertain_spin,
            tta_combo=self.tta_combo, smoothing_check=self.smoothing_check)
        self._restore_settings()

        self.worker = worker or CameraWorker(**self.options.worker_options(), max_pending=2)
        self.models = ModelController(
            self, self.worker, self.settings, info_label=self.model_info_label, combo=self.model_combo,
            recent_menu=self.menu_recent_models, status_bar=self.status_bar, charts=(self.bars, self.timeline))
        self.photos = PhotoController(
            self, self.worker, self.settings, view=self.view, perf_label=self.perf_label,
            batch_bar=self.batch_bar, batch_label=self.batch_label, prev_button=self.prev_button,
            next_button=self.next_button, show_packet=self._show_photo, stop_source=self._leave_live,
            is_live=lambda: self._running)
        self.output = OutputController(
            self, self.worker, self.settings, view=self.view, status_bar=self.status_bar,
            record_button=self.record_button, record_video_check=self.record_video_check,
            current_source=lambda: self._source if self._running else None)
        self.options.attach(self.worker, self.photos.rerun)
        self.analysis = AnalysisLauncher(self, self.settings, self.menu_file, before=self.action_snapshot,
                                         model=lambda: self.models.info.path if self.models.info else None,
                                         options=self.options.worker_options)
        self.models.refresh_recent()
        self._connect()
        self.worker.start()
        self.models.load_initial(model)
        if probe_cameras:
            self._on_refresh_cameras_button_clicked()

    @staticmethod
    def _embed(container: QWidget, widget: QWidget) -> None:
        layout = QVBoxLayout(container)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(widget)

    # ---------------------------------------------------------------------------- public entry points

    @property
    def model_info(self) -> ModelInfo | None:
        return self.models.info

    def use_model(self, path: str, trust: bool = False) -> None:
        self.models.use_model(path, trust)

    def open_paths(self, paths: Sequence[str | Path]) -> None:
        self.photos.open_paths(paths)

    def open_photo(self, path: str | Path) -> None:
        self.photos.open_paths([path])

    def save_snapshot(self, path: str | Path) -> Path | None:
        return self.output.save_snapshot(path)

    def start_recording(self, csv_path: str | Path, video_path: str | Path | None = None) -> None:
        self.output.start_recording(csv_path, video_path)

    def stop_recording(self) -> None:
        self.output.stop_recording()

    def _connect(self) -> None:
        w = self.worker
        w.frame_ready.connect(self._on_worker_frame_ready)
        w.source_started.connect(self._on_worker_source_started)
        w.source_stopped.connect(self._on_worker_source_stopped)
        w.status.connect(self._on_worker_status)
        w.error.connect(self._on_worker_error)
        self.cameras_found.connect(self._on_self_cameras_found)
        self.view.face_clicked.connect(self._on_view_face_clicked)
        self.start_button.clicked.connect(self._on_start_button_clicked)
        self.stop_button.clicked.connect(self._on_stop_button_clicked)
        self.refresh_cameras_button.clicked.connect(self._on_refresh_cameras_button_clicked)
        self.source_combo.activated.connect(self._on_source_combo_activated)
        self.browse_model_button.clicked.connect(self.models.browse)
        self.train_button.clicked.connect(self._on_train_button_clicked)
        self.snapshot_button.clicked.connect(self.output.choose_snapshot)
        self.action_open_photo.triggered.connect(self.photos.choose_photos)
        self.action_open_folder.triggered.connect(self.photos.choose_folder)
        self.action_open_video.triggered.connect(self._on_action_open_video_triggered)
        self.action_open_stream.triggered.connect(self._on_action_open_stream_triggered)
        self.action_snapshot.triggered.connect(self.output.choose_snapshot)
        self.action_record.toggled.connect(self.record_button.setChecked)
        self.record_button.toggled.connect(self.action_record.setChecked)
        self.action_quit.triggered.connect(self.close)
        self.action_choose_model.triggered.connect(self.models.browse)
        self.action_train_model.triggered.connect(self._on_train_button_clicked)
        self.action_about.triggered.connect(self._on_action_about_triggered)

    def _restore_settings(self) -> None:
        s = self.settings
        geometry = s.get_bytes("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        splitter = s.get_bytes("window/splitter")
        if splitter is not None:
            self.main_splitter.restoreState(splitter)
        self.loop_check.setChecked(s.get_bool("source/loop", True))

    def _save_settings(self) -> None:
        s = self.settings
        s.set("window/geometry", self.saveGeometry())
        s.set("window/splitter", self.main_splitter.saveState())
        self.options.save()
        s.set("source/loop", self.loop_check.isChecked())
        self.sources.save()
        s.sync()

    # -------------------------------------------------------------------------------------- sources

    def _on_refresh_cameras_button_clicked(self) -> None:
        self.refresh_cameras_button.setEnabled(False)
        # Probing opens devices, which may take a moment: off the GUI thread, result by signal.
        def probe() -> None:
            cameras = list_cameras()
            try:
                self.cameras_found.emit(cameras)
            except RuntimeError:  # the window was closed meanwhile
                pass

        threading.Thread(target=probe, daemon=True, name="camera-list").start()

    def _on_self_cameras_found(self, cameras: list) -> None:
        self.refresh_cameras_button.setEnabled(True)
        self.sources.set_cameras(cameras)
        if not cameras:
            self.status_bar.showMessage("No camera found: the demo clip, video files, streams and photos "
                                        "still work.", 8000)

    def _on_source_combo_activated(self, index: int) -> None:
        self.sources.on_activated(index)

    def _on_start_button_clicked(self) -> None:
        spec = self.sources.current_spec()
        if spec is not None:
            self.start_source(spec)

    def _on_stop_button_clicked(self) -> None:
        self.stop_source()

    def start_source(self, spec: SourceSpec) -> None:
        """Start live recognition on a camera, file or stream (replacing whatever is shown)."""
        self.sources.select(spec)
        self._source = spec
        self.photos.clear()
        self.timeline.clear_history()
        self._selected = None
        self.view.set_message(f"Opening {spec.describe()}…")
        self.start_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        self._running = True
        self.worker.open_source(spec, loop=self.loop_check.isChecked())

    def stop_source(self) -> None:
        if self._running:
            self.worker.close_source()

    def _leave_live(self) -> None:
        """Photos take over the view: stop the live source, and drop its frames still in flight."""
        self.stop_source()
        self._running = False

    def _on_action_open_video_triggered(self) -> None:
        spec = self.sources.choose_file()
        if spec is not None:
            self.start_source(spec)

    def _on_action_open_stream_triggered(self) -> None:
        spec = self.sources.choose_stream()
        if spec is not None:
            self.start_source(spec)

    def _on_worker_source_started(self, description: str) -> None:
        self.view.set_message("")
        self.status_bar.showMessage(f"Playing {description}", 4000)

    def _on_worker_source_stopped(self, reason: str) -> None:
        self._running = False
        self.start_button.setEnabled(True)
        self.stop_button.setEnabled(False)
        if self.record_button.isChecked():
            self.record_button.setChecked(False)
        if reason in ("stopped", "ended"):
            self.status_bar.showMessage("Stopped." if reason == "stopped" else "End of the video.", 5000)
        else:
            self.view.set_message(reason)
            show_error(self, reason, "Source stopped")

    def _on_worker_status(self, text: str) -> None:
        self.status_bar.showMessage(text, 6000)
        if "lost" in text or "reconnect" in text.lower():
            self.view.set_message(text)
        elif text.endswith("reconnected."):
            self.view.set_message("")

    def _on_worker_error(self, message: str) -> None:
        show_error(self, message)

    # ------------------------------------------------------------------------------------------ frames

    def _on_worker_frame_ready(self, packet: FramePacket) -> None:
        try:
            if not self._running:
                return  # a frame that was in flight when the source stopped
            self._show_packet(packet)
            self.timeline.add(packet.time_s, packet.faces)
            self.frames_shown += 1
            self._update_perf(packet)
        finally:
            self.worker.frame_shown()

    def _show_photo(self, packet: FramePacket) -> None:
        self._selected = None  # a new photo: select its largest face
        self._show_packet(packet)

    def _show_packet(self, packet: FramePacket) -> None:
        faces = packet.faces
        if self._selected is None or find_face(faces, self._selected) is None:
            self._selected = largest_face_key(faces)
        self.view.set_frame(packet.image, faces, self._selected)
        self._update_selected_face()

    def _update_selected_face(self) -> None:
        face = find_face(self.view.faces, self._selected)
        self.bars.set_probabilities(face.probabilities if face is not None else None)
        if face is None:
            hint = "Click a face to select it." if self.view.faces else "No face."
            self.selected_face_label.setText(hint)
        else:
            who = f"#{face.track_id}" if face.track_id is not None else "Face"
            what = f"{face.label} {float(face.score):.0%}" if face.label else "not classified (no model)"
            self.selected_face_label.setText(f"{who}: {what} · {face.box[2]}×{face.box[3]} px")

    def _update_perf(self, packet: FramePacket) -> None:
        now = time.monotonic()
        if now - self._last_status_update < 0.25:  # readable, and cheap
            return
        self._last_status_update = now
        t = packet.timings
        self.perf_label.setText(
            f"{t.get('fps', 0.0):.1f} fps | capture {t.get('capture', 0):.1f} · "
            f"detect {t.get('detect', 0):.1f} · "
            f"classify {t.get('classify', 0):.1f} · draw {self.view.paint_ms:.1f} ms | "
            f"total {t.get('total', 0):.1f} ms | dropped {packet.dropped}")

    def _on_view_face_clicked(self, key: object) -> None:
        if key is not None:
            self._selected = int(key)  # type: ignore[call-overload]
            self._update_selected_face()

    # --------------------------------------------------------------------------------------- closing

    def _on_action_about_triggered(self) -> None:
        QMessageBox.about(self, "About FER Studio", "FER Studio: facial expression recognition on live video "
                          "and photos, with Keras models you can train yourself.")

    def _on_train_button_clicked(self) -> None:
        self.models.open_training_dialog()

    @property
    def _training_dialog(self) -> object:
        return self.models.training_dialog

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        """A model file loads it, a video file plays it, anything else opens as photos."""
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

    def closeEvent(self, event: QCloseEvent) -> None:
        dialog = self.models.training_dialog
        # A training run asks first (stop it, or cancel quitting); "keep training" makes no sense on quit.
        if dialog is not None and not dialog.prepare_to_exit():
            event.ignore()
            return
        self._save_settings()
        if self.record_button.isChecked():
            self.record_button.setChecked(False)
        start = time.monotonic()
        if not self.worker.stop(3000):
            # Busy in a step that cannot be interrupted (loading a large model): the camera is already
            # released; wait for the step to end, since destroying a running QThread aborts the process.
            logger.warning("the worker is still busy; waiting for it to finish")
            self.worker.wait()
        logger.info("worker stopped in %.3f s", time.monotonic() - start)
        if dialog is not None:
            dialog.close()
        self.analysis.shutdown()
        super().closeEvent(event)
