"""Live pyqtgraph charts: probability bars of the selected face, emotion timeline of every tracked face.

Both update the existing plot items with ``setOpts``/``setData`` (never re-create them per frame). The
timeline redraws at most ``max_hz`` times a second, since a label strip needs no more.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any, Sequence

import numpy as np
import pyqtgraph as pg
from PyQt5.QtGui import QColor
from PyQt5.QtWidgets import QLabel, QVBoxLayout, QWidget

from app.core.labels import colour_for

logger = logging.getLogger(__name__)

pg.setConfigOptions(antialias=False, background=(250, 250, 250), foreground=(40, 40, 40))


class ProbabilityBars(pg.PlotWidget):
    """Horizontal bars, one per label, for the selected face's probabilities (0..1)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.labels: tuple[str, ...] = ()
        self.setMouseEnabled(False, False)
        self.setMenuEnabled(False)
        self.hideButtons()
        self.setXRange(0, 1, padding=0)
        self.getPlotItem().showGrid(x=True, y=False, alpha=0.25)
        self.getAxis("bottom").setTicks([[(v, f"{v:.0%}") for v in (0, 0.25, 0.5, 0.75, 1.0)]])
        self._brushes: list[Any] = []
        self._bars = pg.BarGraphItem(x0=[], y=[], height=0.7, width=[], brushes=[])
        self.addItem(self._bars)
        self.values = np.zeros(0)

    def set_labels(self, labels: Sequence[str]) -> None:
        self.labels = tuple(labels)
        self._brushes = [pg.mkBrush(*colour_for(label)) for label in self.labels]
        ticks = [(i, label) for i, label in enumerate(self.labels)]
        self.getAxis("left").setTicks([ticks])
        self.setYRange(-0.6, max(len(self.labels), 1) - 0.4, padding=0)
        self.invertY(True)  # first label on top, as in the model's list
        self.set_probabilities(None)

    def set_probabilities(self, probabilities: dict[str, float] | None) -> None:
        """Show these probabilities (None or empty: no face selected, bars at zero)."""
        probabilities = probabilities or {}
        self.values = np.array([float(probabilities.get(label, 0.0)) for label in self.labels])
        self._bars.setOpts(x0=np.zeros(len(self.labels)), y=np.arange(len(self.labels)), height=0.7,
                           width=self.values, brushes=self._brushes)


class EmotionTimeline(QWidget):
    """A row per tracked face; each processed frame adds a dot coloured by that face's label.

    The x axis is seconds relative to now (the last ``window_s`` seconds). The colour legend is a line of
    text above the plot, so it never hides the newest points.
    """

    def __init__(self, window_s: float = 30.0, max_hz: float = 8.0, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.legend = QLabel("")
        self.legend.setWordWrap(True)
        self.plot = pg.PlotWidget()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.legend)
        layout.addWidget(self.plot, 1)
        self.window_s = window_s
        self._min_interval = 1.0 / max_hz
        self._last_draw = 0.0
        self._history: dict[int, deque[tuple[float, str]]] = {}
        self._now = 0.0
        plot = self.plot
        plot.setMouseEnabled(False, False)
        plot.setMenuEnabled(False)
        plot.hideButtons()
        plot.setLabel("bottom", "seconds")
        plot.setXRange(-window_s, 0, padding=0.01)
        self._scatter = pg.ScatterPlotItem(pxMode=True, symbol="s", size=7, pen=None)
        plot.addItem(self._scatter)
        self._brushes: dict[str, Any] = {}
        plot.invertY(True)

    def set_labels(self, labels: Sequence[str]) -> None:
        self._brushes = {label: pg.mkBrush(*colour_for(label)) for label in labels}
        self.legend.setText("&nbsp;&nbsp;".join(
            f'<span style="color: rgb{colour_for(label)}">&#9632;</span>&nbsp;{label}' for label in labels))

    def clear_history(self) -> None:
        self._history.clear()
        self._scatter.setData([], [])
        self.plot.getAxis("left").setTicks([[]])

    def add(self, time_s: float, faces: Sequence[Any]) -> None:
        """Record this frame's faces (those with a track id and a label) at ``time_s``."""
        self._now = time_s
        for face in faces:
            if face.track_id is None or not face.label:
                continue
            history = self._history.setdefault(int(face.track_id), deque())
            history.append((time_s, face.label))
        cutoff = time_s - self.window_s
        for track_id in list(self._history):
            history = self._history[track_id]
            while history and history[0][0] < cutoff:
                history.popleft()
            if not history:
                del self._history[track_id]
        now = time.monotonic()
        if now - self._last_draw >= self._min_interval:
            self._last_draw = now
            self.redraw()

    @property
    def track_ids(self) -> list[int]:
        return sorted(self._history)

    def redraw(self) -> None:
        rows = {track_id: row for row, track_id in enumerate(self.track_ids)}
        xs: list[float] = []
        ys: list[int] = []
        brushes: list[Any] = []
        default = pg.mkBrush(QColor(150, 150, 150))
        for track_id, history in self._history.items():
            for t, label in history:
                xs.append(t - self._now)
                ys.append(rows[track_id])
                brushes.append(self._brushes.get(label, default))
        self._scatter.setData(x=xs, y=ys, brush=brushes)
        self.plot.getAxis("left").setTicks([[(row, f"#{tid}") for tid, row in rows.items()]])
        self.plot.setYRange(-0.6, max(len(rows), 1) - 0.4, padding=0)
