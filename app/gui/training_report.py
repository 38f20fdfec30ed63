"""The training dialog's report view: accuracy, macro-F1, per-class table and the confusion-matrix image."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any, Mapping

from PyQt5.QtCore import QEvent, QObject, Qt
from PyQt5.QtGui import QPixmap
from PyQt5.QtWidgets import QHeaderView, QLabel, QSizePolicy, QTableWidget, QTableWidgetItem

logger = logging.getLogger(__name__)



def read_report_json(path: str | Path) -> dict[str, Any] | None:
    """A report.json written by the engine, or None when missing or unreadable."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        logger.debug("no usable report at %s: %s", path, exc)
        return None
    return data if isinstance(data, dict) else None


def read_epoch_log(path: str | Path, up_to_epoch: int) -> list[tuple[int, dict[str, float]]]:
    """Rows of a Keras CSVLogger file (0-based ``epoch`` column) as (1-based epoch, metrics), up to an epoch.

    Used on resume to redraw the curves of the epochs trained before; a missing or odd file gives [].
    """
    rows: list[tuple[int, dict[str, float]]] = []
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                try:
                    epoch = int(float(row.pop("epoch"))) + 1
                except (KeyError, TypeError, ValueError):
                    continue
                if epoch > up_to_epoch:
                    continue
                metrics: dict[str, float] = {}
                for key, value in row.items():
                    try:
                        metrics[str(key)] = float(value)
                    except (TypeError, ValueError):
                        pass
                rows.append((epoch, metrics))
    except OSError:
        return []
    return rows


def _number(value: Any, digits: int = 3) -> str:
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return "–"


class ReportView(QObject):
    """Fills the report widgets of the form from a "report" event (or report.json)."""

    def __init__(self, summary: QLabel, table: QTableWidget, confusion: QLabel) -> None:
        super().__init__(confusion)
        self.summary = summary
        self.table = table
        self.confusion = confusion
        header = table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeToContents)
        header.setStretchLastSection(True)
        # The image follows the label's size (never the other way round, or the layout would grow).
        confusion.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Ignored)
        confusion.installEventFilter(self)
        self._pixmap = QPixmap()
        self.report: Mapping[str, Any] | None = None

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.confusion and event.type() == QEvent.Resize and not self._pixmap.isNull():
            self._fit_pixmap()
        return False

    def clear(self) -> None:
        self.report = None
        self.summary.setText("The report appears when training ends.")
        self.table.setRowCount(0)
        self._pixmap = QPixmap()
        self.confusion.clear()
        self.confusion.setText("confusion matrix")

    def show_report(self, report: Mapping[str, Any]) -> None:
        """Show accuracy, macro-F1, the per-class rows and the confusion image (if its file exists)."""
        self.report = report
        accuracy = report.get("accuracy")
        macro_f1 = report.get("macro_f1")
        pct = f"{float(accuracy) * 100:.2f}%" if isinstance(accuracy, (int, float)) else "–"
        self.summary.setText(f"<b>Validation accuracy {pct}</b> &nbsp; · &nbsp; macro-F1 {_number(macro_f1)}"
                             + (f"<br><small>{report['path']}</small>" if report.get("path") else ""))
        per_class = report.get("per_class") or {}
        self.table.setRowCount(len(per_class))
        for row, (label, scores) in enumerate(per_class.items()):
            scores = scores if isinstance(scores, Mapping) else {}
            cells = [str(label), _number(scores.get("precision")), _number(scores.get("recall")),
                     _number(scores.get("f1")), str(scores.get("support", "–"))]
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if column:
                    item.setTextAlignment(int(Qt.AlignRight | Qt.AlignVCenter))
                self.table.setItem(row, column, item)
        self._show_confusion(report.get("confusion_png"))

    def _show_confusion(self, path: Any) -> None:
        self._pixmap = QPixmap(str(path)) if path else QPixmap()
        if self._pixmap.isNull():
            self.confusion.clear()
            self.confusion.setText("no confusion-matrix image")
            return
        self.confusion.setToolTip(str(path))
        self._fit_pixmap()

    def _fit_pixmap(self) -> None:
        size = self.confusion.size()
        self.confusion.setPixmap(self._pixmap.scaled(max(size.width(), 50), max(size.height(), 50),
                                                     Qt.KeepAspectRatio, Qt.SmoothTransformation))
