"""The training dialog's charts: class counts per split (bars) and live loss/accuracy curves (a point per epoch).

Both are plain pyqtgraph widgets that the dialog drops into placeholder widgets of its form.
"""

from __future__ import annotations

import logging
from typing import Mapping, Sequence

import numpy as np
import pyqtgraph as pg
from PyQt5.QtGui import QFont
from PyQt5.QtWidgets import QHBoxLayout, QVBoxLayout, QWidget

logger = logging.getLogger(__name__)

#: A training split is "strongly imbalanced" when its largest class is this many times its smallest.
IMBALANCE_RATIO = 4.0

_SPLIT_COLOURS = ("#3a86ff", "#ff9f1c", "#8338ec", "#2a9d8f", "#e63946")
_TRAIN_PEN = pg.mkPen("#3a86ff", width=2)
_VAL_PEN = pg.mkPen("#ff6b00", width=2)


class EpochAxis(pg.AxisItem):
    """An x axis with whole-number ticks only: there is no epoch 1.5."""

    def tickSpacing(self, minVal: float, maxVal: float, size: float) -> list[tuple[float, float]]:
        levels = [(spacing, offset) for spacing, offset in super().tickSpacing(minVal, maxVal, size) if spacing >= 1]
        return levels or [(1.0, 0.0)]


def _style(plot: pg.PlotWidget, title: str, left: str, bottom: str) -> None:
    """Light background and dark text, like the rest of a desktop dialog (pyqtgraph's default is black)."""
    plot.setBackground("w")
    item = plot.getPlotItem()
    item.setTitle(title, color="#222", size="10pt")
    for name, text in (("left", left), ("bottom", bottom)):
        axis = item.getAxis(name)
        axis.setPen(pg.mkPen("#666"))
        axis.setTextPen(pg.mkPen("#222"))
        axis.setLabel(text, color="#222")
    item.showGrid(x=False, y=True, alpha=0.25)
    item.setMenuEnabled(False)


def place_in(placeholder: QWidget, widget: QWidget) -> None:
    """Put ``widget`` into a placeholder from the form, filling it."""
    layout = placeholder.layout()
    if layout is None:
        layout = QVBoxLayout(placeholder)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(widget)


def training_split(counts: Mapping[str, Sequence[int]]) -> str | None:
    """The split training uses: "Training" / "train" when present, else the largest one."""
    for name in counts:
        if name.lower() in ("training", "train"):
            return name
    return max(counts, key=lambda n: sum(counts[n]), default=None)


def imbalance_warning(labels: Sequence[str], counts: Mapping[str, Sequence[int]],
                      ratio: float = IMBALANCE_RATIO) -> str | None:
    """A warning when the training split is strongly imbalanced (or lacks a class); None when it is fine."""
    split = training_split(counts)
    if split is None or not labels:
        return None
    values = list(counts[split])
    empty = [label for label, n in zip(labels, values) if n == 0]
    if empty:
        return (f"{split} has no images of {', '.join(empty)}: the model cannot learn "
                f"{'that class' if len(empty) == 1 else 'those classes'}.")
    big = int(np.argmax(values))
    small = int(np.argmin(values))
    if values[big] < ratio * values[small]:
        return None
    return (f"Strong class imbalance in {split}: {labels[big]} has {values[big]:,} images, {labels[small]} only "
            f"{values[small]:,} ({values[big] / values[small]:.1f}x). Consider class weights, oversampling or "
            "focal loss.")


class ClassCountsChart(pg.PlotWidget):
    """Grouped bars: for each class, one bar per split."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        _style(self, "Images per class", "images", "")
        item = self.getPlotItem()
        item.setMouseEnabled(x=False, y=False)
        font = QFont()
        font.setPointSizeF(max(6.0, font.pointSizeF() * 0.8))  # seven class names must fit side by side
        item.getAxis("bottom").setStyle(tickFont=font)
        self.setMinimumHeight(150)
        self._legend = item.addLegend(offset=(-5, 2), labelTextColor="#222", colCount=3, labelTextSize="8pt")
        self.bars: dict[str, pg.BarGraphItem] = {}

    def clear_counts(self) -> None:
        item = self.getPlotItem()
        for bar in self.bars.values():
            item.removeItem(bar)
        self._legend.clear()
        self.bars.clear()
        item.getAxis("bottom").setTicks(None)

    def set_counts(self, labels: Sequence[str], counts: Mapping[str, Sequence[int]]) -> None:
        """Draw ``counts`` (split name -> one count per label)."""
        self.clear_counts()
        if not labels or not counts:
            return
        n = len(counts)
        width = 0.8 / n
        positions = np.arange(len(labels), dtype=float)
        for i, (split, values) in enumerate(counts.items()):
            bar = pg.BarGraphItem(
                x=positions + (i - (n - 1) / 2) * width, height=np.asarray(values, dtype=float),
                width=width * 0.9, brush=pg.mkBrush(_SPLIT_COLOURS[i % len(_SPLIT_COLOURS)]), pen=None)
            self.addItem(bar)
            self._legend.addItem(bar, split)
            self.bars[split] = bar
        item = self.getPlotItem()
        item.getAxis("bottom").setTicks([[(float(i), str(label)) for i, label in enumerate(labels)]])
        item.setXRange(-0.6, len(labels) - 0.4, padding=0)
        item.setYRange(0, max(max(v) for v in counts.values()) * 1.3 or 1, padding=0)  # room for the legend


class TrainingCurves(QWidget):
    """Two plots side by side: loss and accuracy, training and validation, a point per epoch."""

    SERIES = ("loss", "val_loss", "accuracy", "val_accuracy")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.loss_plot = pg.PlotWidget(self, axisItems={"bottom": EpochAxis("bottom")})
        self.accuracy_plot = pg.PlotWidget(self, axisItems={"bottom": EpochAxis("bottom")})
        _style(self.loss_plot, "Loss", "loss", "epoch")
        _style(self.accuracy_plot, "Accuracy", "accuracy", "epoch")
        self.curves: dict[str, pg.PlotDataItem] = {}
        for plot, metric in ((self.loss_plot, "loss"), (self.accuracy_plot, "accuracy")):
            plot.getPlotItem().addLegend(offset=(-10, 5), labelTextColor="#222")
            self.curves[metric] = plot.plot(
                name="training", pen=_TRAIN_PEN, symbol="o", symbolSize=6, symbolBrush="#3a86ff", symbolPen=None)
            self.curves["val_" + metric] = plot.plot(
                name="validation", pen=_VAL_PEN, symbol="s", symbolSize=6, symbolBrush="#ff6b00", symbolPen=None)
        self.accuracy_plot.getPlotItem().setYRange(0, 1, padding=0.02)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(self.loss_plot)
        row.addWidget(self.accuracy_plot)
        layout.addLayout(row)
        self._points: dict[str, dict[int, float]] = {name: {} for name in self.SERIES}

    def clear(self) -> None:
        for name in self.SERIES:
            self._points[name].clear()
            self.curves[name].setData([], [])

    def add_epoch(self, epoch: int, metrics: Mapping[str, object]) -> None:
        """Add (or replace) epoch ``epoch``'s point on every curve whose metric is in ``metrics``."""
        for name in self.SERIES:
            value = metrics.get(name)
            try:
                number = float(value)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                continue
            if not np.isfinite(number):
                continue  # a diverged loss (NaN/inf) would wreck the axis range; the log shows it
            self._points[name][int(epoch)] = number
            xs = sorted(self._points[name])
            self.curves[name].setData(xs, [self._points[name][x] for x in xs])

    def point_counts(self) -> dict[str, int]:
        """Points drawn per curve (what the plot items hold, not just what was received)."""
        counts = {}
        for name, curve in self.curves.items():
            xs, _ = curve.getData()
            counts[name] = 0 if xs is None else len(xs)
        return counts
