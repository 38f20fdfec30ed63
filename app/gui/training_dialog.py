"""The training dialog: choose data and settings, run ``fer-studio train`` in a child process, watch it, use it.

The form (``ui/training_dialog.ui``) is layout only; every signal is connected here. Training runs in a
:class:`~app.workers.training_process.TrainingProcess` (never in this process), the data set summary is read in
a pool thread, and only this (GUI) thread touches widgets.

Opened by the main window as ``TrainingDialog(parent=main_window)``; its ``modelReady(path)`` signal asks the
main window to load the new model (connect it to ``MainWindow.use_model``).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from PyQt5 import uic
from PyQt5.QtCore import QSettings, QTimer, QUrl, pyqtSignal
from PyQt5.QtGui import QDesktopServices
from PyQt5.QtWidgets import QDialog, QFileDialog, QMessageBox, QWidget

from app.core.model_io import bundled_models_dir
from app.core.package_data import bundled_file
from app.gui.errors import show_error
from app.gui.training_charts import ClassCountsChart, TrainingCurves, imbalance_warning, place_in
from app.gui.training_form import (
    ask_close_while_training,
    browse_start,
    can_resume,
    epoch_log_line,
    eta_text,
    form_config,
    fresh_folder,
    holds_run,
    restore_form,
    save_form,
    show_dropout_choice,
    show_width_choice,
    start_log_line,
    take_architecture,
)
from app.gui.training_report import ReportView, read_epoch_log, read_report_json
from app.workers.dataset_scan import DatasetScanner
from app.workers.training_process import TrainingConfig, TrainingOutcome, TrainingProcess

logger = logging.getLogger(__name__)

UI_FILE = bundled_file("ui", "training_dialog.ui")
_ERROR_STYLE = "color: #b00020;"
_OK_STYLE = "color: #1b5e20;"
_WARN_STYLE = "color: #8a4b00;"


@lru_cache(maxsize=1)
def _form_class() -> type:
    form, _base = uic.loadUiType(str(UI_FILE))
    return form


class TrainingDialog(QDialog):
    """Train a model from the GUI and hand the result to the main window."""

    modelReady = pyqtSignal(str)  # "Use this model": path of the model file to load
    trainingFinished = pyqtSignal(object)  # TrainingOutcome of each run

    def __init__(self, parent: QWidget | None = None, settings: QSettings | None = None) -> None:
        super().__init__(parent)
        self.ui = _form_class()()
        self.ui.setupUi(self)
        #: False in tests and scripts: no question boxes (closing while training then stops the run).
        self.interactive = True
        self._settings = settings if settings is not None else QSettings("FER Studio", "FER Studio")
        self.counts_chart = ClassCountsChart()
        place_in(self.ui.countsPlaceholder, self.counts_chart)
        self.curves = TrainingCurves()
        place_in(self.ui.curvesPlaceholder, self.curves)
        self.report_view = ReportView(self.ui.reportSummaryLabel, self.ui.perClassTable, self.ui.confusionLabel)
        self.ui.logEdit.setMaximumBlockCount(5000)
        self.ui.imbalanceLabel.setStyleSheet(_WARN_STYLE)
        self.ui.imbalanceLabel.hide()
        self.ui.mainSplitter.setStretchFactor(1, 1)
        self.process = TrainingProcess(self)
        self.scanner = DatasetScanner(self)
        self._scan_timer = QTimer(self)
        self._scan_timer.setSingleShot(True)
        self._scan_timer.setInterval(400)  # wait for typing to pause before reading a data set
        self.last_outcome: TrainingOutcome | None = None
        self.best_model: str | None = None
        self._data_error: str | None = None
        self._epochs = 0
        self._epoch_t0: float | None = None
        self._epoch_seconds: list[float] = []
        self._connect()
        restore_form(self.ui, self, self._settings)
        self._on_archCombo_currentTextChanged(self.ui.archCombo.currentText())
        self._update_buttons()

    def _connect(self) -> None:
        ui = self.ui
        ui.dataEdit.textChanged.connect(self._on_dataEdit_textChanged)
        ui.archCombo.currentTextChanged.connect(self._on_archCombo_currentTextChanged)
        ui.dataFileButton.clicked.connect(self._on_dataFileButton_clicked)
        ui.dataFolderButton.clicked.connect(self._on_dataFolderButton_clicked)
        ui.outEdit.textChanged.connect(self._on_outEdit_textChanged)
        ui.outButton.clicked.connect(self._on_outButton_clicked)
        ui.initButton.clicked.connect(self._on_initButton_clicked)
        ui.startButton.clicked.connect(self._on_startButton_clicked)
        ui.stopButton.clicked.connect(self._on_stopButton_clicked)
        ui.resumeButton.clicked.connect(self._on_resumeButton_clicked)
        ui.useModelButton.clicked.connect(self._on_useModelButton_clicked)
        ui.openFolderButton.clicked.connect(self._on_openFolderButton_clicked)
        ui.closeButton.clicked.connect(self._on_closeButton_clicked)
        self._scan_timer.timeout.connect(self._on_scanTimer_timeout)
        self.scanner.succeeded.connect(self._on_scanner_succeeded)
        self.scanner.failed.connect(self._on_scanner_failed)
        process = self.process
        process.runStarted.connect(self._on_process_runStarted)
        process.batchProgress.connect(self._on_process_batchProgress)
        process.epochEnded.connect(self._on_process_epochEnded)
        process.checkpointSaved.connect(self._on_process_checkpointSaved)
        process.reportReady.connect(self._on_process_reportReady)
        process.trainingDone.connect(self._on_process_trainingDone)
        process.errorReported.connect(self._on_process_errorReported)
        process.logLine.connect(self._on_process_logLine)
        process.finished.connect(self._on_process_finished)

    # -- public API ------------------------------------------------------------------------------------------

    def config(self, resume: str | None = None) -> TrainingConfig:
        """The run the form describes (``resume``: None fresh, "" from the output folder's last.keras)."""
        return form_config(self.ui, resume)

    def is_training(self) -> bool:
        return self.process.is_running()

    def start(self, resume: str | None = None) -> bool:
        """Start a run with the form's settings; False (with the reason shown) when it cannot start."""
        if self.is_training():
            return False
        data = self.ui.dataEdit.text().strip()
        if not data or not Path(data).exists():
            self._set_status(f"Choose an existing data set first{': ' + data if data else ''}.", _ERROR_STYLE)
            return False
        init_from = self.ui.initEdit.text().strip()
        if resume is None and init_from and not Path(init_from).expanduser().is_file():
            self._set_status(f"The model to start from does not exist: {init_from}", _ERROR_STYLE)
            return False
        if not self.ui.outEdit.text().strip():
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            self.ui.outEdit.setText(str(Path.home() / "fer-studio-runs" / f"{self.ui.archCombo.currentText()}-{stamp}"))
        out = Path(self.ui.outEdit.text().strip()).expanduser()
        if resume is None and holds_run(out):  # the engine never overwrites a run: offer a fresh folder
            fresh = fresh_folder(out)
            if not self._ask("Output folder in use", f"{out} already holds a training run.\n\nStart the new run "
                             f"in {fresh} instead? (Resume continues the earlier run.)"):
                return False
            self.ui.outEdit.setText(str(fresh))
        config = self.config(resume)
        save_form(self.ui, self, self._settings)
        self._reset_run_view()
        command = self.process.start(config)
        self._append_log("$ " + " ".join(command))
        self._set_status("Starting… (loading TensorFlow can take a few seconds)", "")
        self._update_buttons()
        return True

    def stop(self) -> None:
        """Stop the run after its current batch (a second call kills it at once)."""
        self.process.stop()
        if self.process.is_running():
            self._set_status("Stopping after the current batch… (Kill now ends it at once)", _WARN_STYLE)
        self._update_buttons()

    def shutdown(self) -> None:
        """Stop a run and wait for it (blocking; killed after the grace period): for application exit."""
        save_form(self.ui, self, self._settings)
        self.process.shutdown()

    def prepare_to_exit(self) -> bool:
        """For the main window's closeEvent: while training, ask (stop / cancel), then stop and wait.

        Returns False when the user cancels, so the main window stays open.
        """
        if self.is_training() and self.interactive and \
                ask_close_while_training(self, allow_background=False) == "cancel":
            return False
        self.shutdown()
        return True

    # -- settings --------------------------------------------------------------------------------------------

    def _on_archCombo_currentTextChanged(self, arch: str) -> None:
        show_width_choice(self.ui.widthSpin, arch)
        show_dropout_choice(self.ui.dropoutSpin, arch)

    # -- data ------------------------------------------------------------------------------------------------

    def _on_dataEdit_textChanged(self, _text: str) -> None:
        self._scan_timer.start()
        self._update_buttons()

    def _on_scanTimer_timeout(self) -> None:
        path = self.ui.dataEdit.text().strip()
        self.counts_chart.clear_counts()
        self.ui.imbalanceLabel.hide()
        self._data_error = None
        self.ui.valSplitSpin.setEnabled(bool(path) and Path(path).is_dir())  # FER2013 brings its own split
        if not path:
            self.ui.datasetSummaryLabel.setText("Choose a data set to see its classes and counts.")
        elif not Path(path).exists():
            self._data_error = f"{path}: no such file or folder."
            self._show_data_message(self._data_error, _ERROR_STYLE)
        else:
            self._show_data_message(f"Reading {Path(path).name}…", "")
            self.scanner.scan(path)
        self._update_buttons()

    def _on_dataFileButton_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Choose a FER2013 CSV file", browse_start(self.ui.dataEdit.text()),
            "FER2013 CSV (*.csv *.csv.gz *.gz);;All files (*)")
        if path:
            self.ui.dataEdit.setText(path)

    def _on_dataFolderButton_clicked(self) -> None:
        path = QFileDialog.getExistingDirectory(
            self, "Choose a folder-per-class data set", browse_start(self.ui.dataEdit.text()))
        if path:
            self.ui.dataEdit.setText(path)

    def _on_scanner_succeeded(self, path: str, summary: Any) -> None:
        if path != self.ui.dataEdit.text().strip():
            return
        labels = tuple(summary.labels)
        counts = {str(split): [int(n) for n in values] for split, values in summary.counts.items()}
        splits = " · ".join(f"{split} {sum(values):,}" for split, values in counts.items())
        self._show_data_message(f"{len(labels)} classes ({', '.join(labels)}) · {splits}", "")
        self.counts_chart.set_counts(labels, counts)
        warning = imbalance_warning(labels, counts)
        self.ui.imbalanceLabel.setText(f"⚠ {warning}" if warning else "")
        self.ui.imbalanceLabel.setVisible(bool(warning))
        self._update_buttons()

    def _on_scanner_failed(self, path: str, message: str) -> None:
        if path != self.ui.dataEdit.text().strip():
            return
        self._data_error = message
        self._show_data_message(message, _ERROR_STYLE)
        self._update_buttons()

    def _show_data_message(self, text: str, style: str) -> None:
        self.ui.datasetSummaryLabel.setText(text)
        self.ui.datasetSummaryLabel.setStyleSheet(style)

    # -- output folder and buttons ---------------------------------------------------------------------------

    def _on_outEdit_textChanged(self, _text: str) -> None:
        self._update_buttons()

    def _on_outButton_clicked(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Choose the output folder",
                                                browse_start(self.ui.outEdit.text()))
        if path:
            self.ui.outEdit.setText(path)

    def _on_initButton_clicked(self) -> None:
        start = self.ui.initEdit.text().strip() or str(bundled_models_dir())
        path, _ = QFileDialog.getOpenFileName(self, "Start from this model's weights", browse_start(start),
                                              "Keras models (*.h5 *.hdf5 *.keras);;All files (*)")
        if path:
            self.ui.initEdit.setText(path)
            taken = take_architecture(self.ui, path)
            if taken:
                self._set_status(f"Architecture set to the model's own: {taken}.", _OK_STYLE)

    def _on_startButton_clicked(self) -> None:
        self.start()

    def _on_resumeButton_clicked(self) -> None:
        self.start(resume="")

    def _on_stopButton_clicked(self) -> None:
        self.stop()

    def _on_useModelButton_clicked(self) -> None:
        path = self.best_model
        if not path or not Path(path).is_file():
            self._set_status("There is no trained model to use yet.", _ERROR_STYLE)
            return
        logger.info("handing model %s to the main window", path)
        self.modelReady.emit(path)
        self._set_status(f"Sent {path} to the main window.", _OK_STYLE)

    def _on_openFolderButton_clicked(self) -> None:
        out = self.ui.outEdit.text().strip()
        if out and Path(out).is_dir():
            QDesktopServices.openUrl(QUrl.fromLocalFile(out))

    def _on_closeButton_clicked(self) -> None:
        self.close()

    def _update_buttons(self) -> None:
        ui = self.ui
        running = self.process.is_running()
        out = ui.outEdit.text().strip()
        # The data summary and warning stay readable while training; only what would change the run locks.
        for widget in (ui.dataEdit, ui.dataFileButton, ui.dataFolderButton, ui.trainingGroup, ui.outputGroup):
            widget.setEnabled(not running)
        ui.startButton.setEnabled(not running and bool(ui.dataEdit.text().strip()) and self._data_error is None)
        ui.resumeButton.setEnabled(not running and bool(out) and can_resume(Path(out).expanduser()))
        ui.stopButton.setEnabled(running)
        ui.stopButton.setText("&Kill now" if self.process.is_stopping() else "S&top")
        ui.useModelButton.setEnabled(bool(self.best_model) and Path(str(self.best_model)).is_file())
        ui.openFolderButton.setEnabled(bool(out) and Path(out).expanduser().is_dir())

    # -- the run ---------------------------------------------------------------------------------------------

    def _reset_run_view(self) -> None:
        self.curves.clear()  # a resumed run redraws its earlier epochs from log.csv
        self.report_view.clear()
        self.best_model = None
        self.last_outcome = None
        self._epoch_seconds = []
        self._epoch_t0 = None
        self.ui.modelPathLabel.clear()
        self.ui.progressBar.setRange(0, 1)
        self.ui.progressBar.setValue(0)
        self.ui.epochLabel.setText("Starting")
        self.ui.etaLabel.clear()
        self.ui.tabs.setCurrentWidget(self.ui.logTab)

    def _on_process_runStarted(self, event: dict) -> None:
        self._epochs = int(event.get("epochs") or 0)
        initial = int(event.get("initial_epoch") or 0)
        self._epoch_t0 = time.monotonic()
        out = event.get("out") or self.ui.outEdit.text().strip()
        if initial > 0:  # resumed: redraw the epochs trained before
            for epoch, metrics in read_epoch_log(Path(out) / "log.csv", initial):
                self.curves.add_epoch(epoch, metrics)
        steps = int(event.get("steps_per_epoch") or 1)
        self.ui.progressBar.setRange(0, max(1, steps))
        self.ui.epochLabel.setText(f"Epoch {initial + 1}/{self._epochs}")
        self._append_log(start_log_line(event))
        self._set_status("Training…", "")

    def _on_process_batchProgress(self, event: dict) -> None:
        epoch = int(event.get("epoch") or 0)
        step = int(event.get("step") or 0)
        steps = int(event.get("steps") or 0) or self.ui.progressBar.maximum()
        self.ui.progressBar.setRange(0, max(1, steps))
        self.ui.progressBar.setValue(min(step, steps))
        self.ui.epochLabel.setText(f"Epoch {epoch}/{self._epochs}")
        if self._epoch_t0 is not None and step > 0:
            self.ui.etaLabel.setText(eta_text(time.monotonic() - self._epoch_t0, epoch, step, steps, self._epochs,
                                              self._epoch_seconds))

    def _on_process_epochEnded(self, event: dict) -> None:
        epoch = int(event.get("epoch") or 0)
        metrics = event.get("metrics") or {}
        self.curves.add_epoch(epoch, metrics)
        seconds = event.get("seconds")
        if isinstance(seconds, (int, float)):
            self._epoch_seconds.append(float(seconds))
        self._epoch_t0 = time.monotonic()
        self.ui.progressBar.setValue(self.ui.progressBar.maximum())
        self._append_log(epoch_log_line(event))

    def _on_process_checkpointSaved(self, event: dict) -> None:
        self.best_model = str(event.get("path"))
        value = event.get("value")
        score = f", {event.get('monitor', 'score')} {value:.4f}" if isinstance(value, (int, float)) else ""
        text = f"Best model so far: {self.best_model} (epoch {event.get('epoch', '?')}{score})"
        self.ui.modelPathLabel.setText(text)
        self._append_log(text)
        self._update_buttons()

    def _on_process_reportReady(self, event: dict) -> None:
        self.report_view.show_report(event)

    def _on_process_trainingDone(self, event: dict) -> None:
        if event.get("best_model"):
            self.best_model = str(event["best_model"])
            self.ui.modelPathLabel.setText(f"Model: {self.best_model} (best epoch {event.get('best_epoch', '?')})")

    def _on_process_errorReported(self, message: str) -> None:
        self._append_log(f"ERROR: {message}")

    def _on_process_logLine(self, line: str) -> None:
        self._append_log(line)

    def _on_process_finished(self, outcome: TrainingOutcome) -> None:
        self.last_outcome = outcome
        if outcome.last_checkpoint:
            self.best_model = outcome.last_checkpoint
            if not self.ui.modelPathLabel.text():
                self.ui.modelPathLabel.setText(f"Last good checkpoint: {outcome.last_checkpoint}")
        if self.report_view.report is None and self.process.last_checkpoint:
            report = read_report_json(Path(self.process.last_checkpoint).parent / "report.json")
            if report is not None and outcome.ok:
                self.report_view.show_report(report)
        message = outcome.describe()
        self._set_status(message, _OK_STYLE if outcome.ok else _WARN_STYLE if outcome.stopped else _ERROR_STYLE)
        self._append_log(message)
        if not outcome.ok and not outcome.stopped and not self.isVisible():
            show_error(self.parentWidget(), message, "Training failed")  # it ran hidden: say so
        self.ui.epochLabel.setText("Stopped" if outcome.stopped else "Finished" if outcome.ok else "Failed")
        self.ui.etaLabel.clear()
        if self.report_view.report is not None:
            self.ui.tabs.setCurrentWidget(self.ui.reportTab)
        self._update_buttons()
        self.trainingFinished.emit(outcome)

    # -- helpers ---------------------------------------------------------------------------------------------

    def _append_log(self, line: str) -> None:
        self.ui.logEdit.appendPlainText(line)

    def _set_status(self, text: str, style: str) -> None:
        self.ui.statusLabel.setText(text)
        self.ui.statusLabel.setStyleSheet(style)

    def _ask(self, title: str, text: str) -> bool:
        if not self.interactive:
            return True
        answer = QMessageBox.question(self, title, text, QMessageBox.Yes | QMessageBox.No, QMessageBox.No)
        return answer == QMessageBox.Yes


    # -- closing ---------------------------------------------------------------------------------------------

    def reject(self) -> None:
        """Esc, the window's close button and Close all end here: ask first while training."""
        if self.is_training():
            choice = ask_close_while_training(self, allow_background=self.parent() is not None) \
                if self.interactive else "stop"
            if choice == "cancel":
                return
            if choice == "stop":
                self.stop()
        save_form(self.ui, self, self._settings)
        super().reject()
