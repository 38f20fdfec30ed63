"""The "Analyze video file…" dialog: a background analysis with progress and Cancel, then its charts.

The analysis runs in a child process (:class:`~app.workers.analysis_process.AnalysisProcess`, the same
``fer-studio analyze`` as on the command line), never on the GUI thread. When it ends, the dialog reads
its ``summary.json`` and shows one :class:`~app.gui.analysis_charts.PersonChart` per person; clicking a
timeline shows that frame of the video with its faces, drawn by the overlay renderer from ``faces.csv``.
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PyQt5 import uic
from PyQt5.QtCore import Qt, QUrl
from PyQt5.QtGui import QCloseEvent, QDesktopServices, QImage, QPixmap
from PyQt5.QtWidgets import QDialog, QWidget

from app.core.analysis.outputs import read_faces
from app.core.package_data import bundled_file
from app.core.recognition.annotate import draw_faces
from app.core.recognition.pipeline import Face
from app.gui.analysis_charts import PersonChart
from app.gui.errors import show_error
from app.workers.analysis_process import (
    AnalysisOutcome,
    AnalysisProcess,
    AnalysisRequest,
)

logger = logging.getLogger(__name__)

UI_FILE = bundled_file("ui", "analysis_dialog.ui")
_ERROR_STYLE = "color: #b00020;"


@lru_cache(maxsize=1)
def _form_class() -> type:
    form, _base = uic.loadUiType(str(UI_FILE))
    return form


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    minutes, sec = divmod(int(seconds), 60)
    return f"{minutes}:{sec:02d}"


class AnalysisDialog(QDialog):
    """Analyse one video in the background; show progress, then the report's charts and frames."""

    def __init__(self, request: AnalysisRequest, parent: QWidget | None = None, *,
                 python: str | None = None) -> None:
        super().__init__(parent)
        self.ui = _form_class()()
        self.ui.setupUi(self)
        self.setAttribute(Qt.WA_DeleteOnClose, False)
        self.request = request
        self.process = AnalysisProcess(self)
        self.outcome: AnalysisOutcome | None = None
        self.summary: dict[str, Any] | None = None
        self.charts: list[PersonChart] = []
        self._faces_by_frame: dict[int, list[Face]] | None = None
        self._folder: Path | None = None
        self.ui.videoLabel.setText(f"Video: {request.video}  →  results under {request.out}")
        self.ui.progressBar.setRange(0, 0)  # busy until the first progress event says how many frames
        self.ui.resultsSplitter.setStretchFactor(0, 3)
        self.ui.resultsSplitter.setStretchFactor(1, 2)
        self._connect()
        self.process.start(request, python)

    def _connect(self) -> None:
        self.ui.cancelButton.clicked.connect(self._on_cancelButton_clicked)
        self.ui.closeButton.clicked.connect(self.close)
        self.ui.openReportButton.clicked.connect(self._on_openReportButton_clicked)
        self.ui.openFolderButton.clicked.connect(self._on_openFolderButton_clicked)
        self.process.ready.connect(self._on_process_ready)
        self.process.progress.connect(self._on_process_progress)
        self.process.finished.connect(self._on_process_finished)

    # -- slots -----------------------------------------------------------------------------------------------

    def _on_process_ready(self, _event: dict) -> None:
        self.ui.statusLabel.setText("Analysing…")

    def _on_process_progress(self, event: dict) -> None:
        total, done = int(event.get("total") or 0), int(event.get("frames_read") or 0)
        if total:
            self.ui.progressBar.setRange(0, total)
            self.ui.progressBar.setValue(min(done, total))
        people = int(event.get("people") or 0)
        self.ui.statusLabel.setText(
            f"{done}{f' / {total}' if total else ''} frames, {float(event.get('fps') or 0):.1f} frames/s, "
            f"ETA {_clock(event.get('eta_s'))}, {people} {'person' if people == 1 else 'people'} so far")

    def _on_cancelButton_clicked(self) -> None:
        self.ui.statusLabel.setText("Stopping… (the part already analysed is kept)")
        self.ui.cancelButton.setEnabled(False)
        self.process.cancel()

    def _on_process_finished(self, outcome: AnalysisOutcome) -> None:
        self.outcome = outcome
        self.ui.cancelButton.setEnabled(False)
        self.ui.progressBar.setRange(0, 1)
        self.ui.progressBar.setValue(1 if outcome.result else 0)
        if outcome.result is None:
            message = outcome.error or "the analysis failed."
            if outcome.cancelled and outcome.error is None:
                message = "Cancelled before any frame was analysed."
            self.ui.statusLabel.setStyleSheet(_ERROR_STYLE)
            self.ui.statusLabel.setText(message)
            if not outcome.cancelled:
                show_error(self, message, "Analyze video file")
            return
        self._load_results(outcome.result)

    def _on_openReportButton_clicked(self) -> None:
        if self._folder is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self._folder / "report.html")))

    def _on_openFolderButton_clicked(self) -> None:
        if self._folder is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self._folder)))

    # -- results ---------------------------------------------------------------------------------------------

    @property
    def folder(self) -> Path:
        """The results folder (known once the analysis has ended with results)."""
        if self._folder is None:
            raise RuntimeError("the analysis has no results yet")
        return self._folder

    def _load_results(self, result: dict) -> None:
        self._folder = Path(result["folder"])
        try:
            self.summary = json.loads((Path(result["folder"]) / "summary.json").read_text(encoding="utf-8"))
        except (OSError, ValueError, KeyError) as exc:
            self.ui.statusLabel.setStyleSheet(_ERROR_STYLE)
            self.ui.statusLabel.setText(f"The analysis ended but its summary cannot be read: {exc}")
            return
        summary = self.summary
        people = summary.get("people", [])
        status = {"done": "Done", "interrupted": "Stopped", "partial": "Ended early"}.get(summary["status"], "")
        text = (f"{status}: {summary['frames_analysed']} frames, {summary['faces']} faces, {len(people)} "
                f"{'person' if len(people) == 1 else 'people'} in {summary['seconds']:.0f} s.")
        notes = list(summary.get("notes", []))
        if not people:
            notes.insert(0, "No face was found in this video.")
        self.ui.statusLabel.setText(" ".join([text, *notes]))
        self.ui.openReportButton.setEnabled(True)
        self.ui.openFolderButton.setEnabled(True)
        self.ui.peopleHint.setText("No face was found in this video." if not people else
                                   "Click a point on a timeline to see that frame with its faces.")
        for person in people:
            chart = PersonChart(person, summary["labels"], self.ui.peopleContainer)
            chart.frameRequested.connect(self._on_chart_frameRequested)
            self.ui.peopleLayout.addWidget(chart)
            self.charts.append(chart)
        self.ui.peopleLayout.addStretch(1)

    def _on_chart_frameRequested(self, frame: int, time_s: float, person: int) -> None:
        self.show_frame(frame, time_s, person)

    def faces_at(self, frame: int) -> list[Face]:
        """The faces faces.csv holds for ``frame`` (the CSV is indexed once, on first use)."""
        if self._faces_by_frame is None:
            index: dict[int, list[Face]] = {}
            for row in read_faces(self.folder / "faces.csv"):
                index.setdefault(row["frame"], []).append(Face(
                    box=row["box"], label=row["label"], score=row["score"],
                    probabilities=row["probabilities"], track_id=row["person"], uncertain=row["uncertain"]))
            self._faces_by_frame = index
        return self._faces_by_frame.get(frame, [])

    def show_frame(self, frame: int, time_s: float, person: int | None = None) -> np.ndarray | None:
        """Read ``frame`` of the video, draw its faces (``person`` selected) and show it; the drawn image."""
        image = _read_frame(self.summary["video"] if self.summary else self.request.video, frame)
        if image is None:
            self.ui.frameLabel.setText(f"Frame {frame} cannot be read from the video any more.")
            return None
        faces = self.faces_at(frame)
        drawn = np.ascontiguousarray(draw_faces(image, faces, selected=person))
        rgb = cv2.cvtColor(drawn, cv2.COLOR_BGR2RGB)
        qimage = QImage(rgb.data, rgb.shape[1], rgb.shape[0], rgb.strides[0], QImage.Format_RGB888).copy()
        pixmap = QPixmap.fromImage(qimage)
        target = self.ui.frameLabel.size()
        self.ui.frameLabel.setPixmap(pixmap.scaled(target, Qt.KeepAspectRatio, Qt.SmoothTransformation))
        described = ", ".join(f"#{f.track_id} {f.label} {f.score:.0%}" for f in faces) or "no face"
        self.ui.frameCaption.setText(f"Frame {frame} at {time_s:.2f} s: {described}")
        return drawn

    def closeEvent(self, event: QCloseEvent) -> None:
        self.process.shutdown()
        super().closeEvent(event)


def _read_frame(video: str, frame: int) -> np.ndarray | None:
    """One frame of a video file, upright (as the analysis saw it), or None."""
    cap = cv2.VideoCapture(str(video))
    try:
        if not cap.isOpened():
            return None
        if hasattr(cv2, "CAP_PROP_ORIENTATION_AUTO"):
            cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
        if frame:
            cap.set(cv2.CAP_PROP_POS_FRAMES, frame)
        ok, image = cap.read()
        return image if ok else None
    finally:
        cap.release()
