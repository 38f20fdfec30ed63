"""The report's charts in the window: per person, the share of each emotion and a clickable timeline.

Built from ``summary.json`` (the same numbers as report.html). Clicking a timeline picks the nearest
analysed point and emits :attr:`PersonChart.frameRequested` with its frame, time and the person, so the
dialog can show that frame with its faces.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pyqtgraph as pg
from PyQt5.QtCore import Qt, pyqtSignal
from PyQt5.QtGui import QColor
from PyQt5.QtWidgets import QHBoxLayout, QLabel, QVBoxLayout, QWidget

from app.core.labels import colour_for

logger = logging.getLogger(__name__)


def _clock(seconds: float) -> str:
    minutes, sec = divmod(max(0.0, seconds), 60.0)
    return f"{int(minutes)}:{sec:05.2f}"


class PersonChart(QWidget):
    """One person: a caption, horizontal share bars and an emotion timeline (click to see a frame)."""

    frameRequested = pyqtSignal(int, float, int)  # frame index, time in seconds, person number

    def __init__(self, person: dict[str, Any], labels: list[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.person = int(person["person"])
        self.labels = list(labels)
        points = person.get("timeline") or []
        self.times = np.array([p[0] for p in points], np.float64)
        self.frames = np.array([p[1] for p in points], np.int64)
        self.probabilities = np.array([p[2:] for p in points], np.float32).reshape(len(points), len(labels))
        share = person.get("share", {})
        top = max(share, key=share.get) if share else ""
        caption = QLabel(f"<b>Person {self.person}</b> — {person.get('frames', 0)} frames from "
                         f"{_clock(person.get('first_s', 0))} to {_clock(person.get('last_s', 0))}"
                         + (f", mostly <b>{top}</b> ({share[top]:.0%})" if top else ""))
        caption.setTextFormat(Qt.RichText)
        self.shares = self._share_plot(share)
        self.timeline = self._timeline_plot()
        row = QHBoxLayout()
        row.addWidget(self.shares, 1)
        row.addWidget(self.timeline, 3)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 10)
        layout.addWidget(caption)
        layout.addLayout(row)

    def _share_plot(self, share: dict[str, float]) -> pg.PlotWidget:
        plot = pg.PlotWidget()
        plot.setMinimumHeight(150)
        plot.setMouseEnabled(False, False)
        plot.setMenuEnabled(False)
        plot.hideButtons()
        values = [float(share.get(k, 0.0)) for k in self.labels]
        brushes = [pg.mkBrush(QColor(*colour_for(k))) for k in self.labels]
        self.share_bars = pg.BarGraphItem(x0=0, y=np.arange(len(self.labels)), height=0.7, width=values,
                                          brushes=brushes)
        plot.addItem(self.share_bars)
        plot.setXRange(0, 1, padding=0.02)
        plot.getAxis("left").setTicks([list(enumerate(self.labels))])
        plot.getAxis("bottom").setTicks([[(v, f"{v:.0%}") for v in (0, 0.5, 1.0)]])
        return plot

    def _timeline_plot(self) -> pg.PlotWidget:
        plot = pg.PlotWidget()
        plot.setMinimumHeight(150)
        plot.setMenuEnabled(False)
        plot.setMouseEnabled(True, False)
        plot.setYRange(0, 1, padding=0.02)
        plot.setLabel("bottom", "time (s)")
        plot.addLegend(offset=(-4, 4), labelTextSize="7pt")
        self.curves = []
        for i, label in enumerate(self.labels):
            pen = pg.mkPen(QColor(*colour_for(label)), width=1.5)
            symbol = "o" if len(self.times) < 3 else None
            self.curves.append(plot.plot(self.times, self.probabilities[:, i], pen=pen, name=label,
                                         symbol=symbol, symbolSize=5))
        self.marker = pg.InfiniteLine(angle=90, pen=pg.mkPen((40, 40, 40), width=1, style=Qt.DashLine))
        self.marker.hide()
        plot.addItem(self.marker)
        plot.scene().sigMouseClicked.connect(self._on_scene_sigMouseClicked)
        return plot

    def _on_scene_sigMouseClicked(self, event: Any) -> None:
        item = self.timeline.getPlotItem()
        if not item.sceneBoundingRect().contains(event.scenePos()):
            return
        point = item.vb.mapSceneToView(event.scenePos())
        self.pick_at(float(point.x()))

    def pick_at(self, time_s: float) -> int | None:
        """Choose the analysed point nearest ``time_s``: mark it and emit frameRequested; its frame."""
        if len(self.times) == 0:
            return None
        i = int(np.argmin(np.abs(self.times - time_s)))
        self.marker.setValue(float(self.times[i]))
        self.marker.show()
        frame = int(self.frames[i])
        self.frameRequested.emit(frame, float(self.times[i]), self.person)
        return frame
