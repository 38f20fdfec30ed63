"""Draw a confusion matrix as a BGR image with numpy and OpenCV only (no matplotlib, no Qt).

Rows are true classes and columns predicted classes. Cells are shaded white to dark blue by the fraction
of their row (or by count), show that number and, when normalised, the count underneath. Rows without
samples are grey. Long column names are written vertically so any label set stays readable.
"""

from __future__ import annotations

import logging
from typing import Sequence

import cv2
import numpy as np

logger = logging.getLogger(__name__)

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_INK = (30, 30, 30)
_WHITE = (255, 255, 255)
_EMPTY = (225, 225, 225)
# matplotlib's "Blues" end points, in BGR.
_LOW = np.array([255, 251, 247], np.float32)
_HIGH = np.array([107, 48, 8], np.float32)


def _text_size(text: str, scale: float, thickness: int = 1) -> tuple[int, int, int]:
    (w, h), baseline = cv2.getTextSize(text, _FONT, scale, thickness)
    return w, h, baseline


def _put(img: np.ndarray, text: str, x: int, y: int, scale: float, colour: tuple[int, int, int],
         thickness: int = 1) -> None:
    cv2.putText(img, text, (int(x), int(y)), _FONT, scale, colour, thickness, cv2.LINE_AA)


def _put_centred(img: np.ndarray, text: str, cx: float, cy: float, scale: float,
                 colour: tuple[int, int, int], thickness: int = 1) -> None:
    w, h, _ = _text_size(text, scale, thickness)
    _put(img, text, cx - w / 2, cy + h / 2, scale, colour, thickness)


def _vertical_text(text: str, scale: float, colour: tuple[int, int, int]) -> np.ndarray:
    """Text rendered on white and turned 90 degrees counter-clockwise (reads bottom to top)."""
    w, h, base = _text_size(text, scale)
    canvas = np.full((h + base + 4, w + 4, 3), 255, np.uint8)
    _put(canvas, text, 2, h + 2, scale, colour)
    return np.ascontiguousarray(np.rot90(canvas))


def _paste(img: np.ndarray, patch: np.ndarray, x: int, y: int) -> None:
    h = min(patch.shape[0], img.shape[0] - y)
    w = min(patch.shape[1], img.shape[1] - x)
    if h > 0 and w > 0:
        img[y:y + h, x:x + w] = patch[:h, :w]


def _shade(value: float) -> tuple[int, int, int]:
    colour = _LOW + (_HIGH - _LOW) * float(np.clip(value, 0.0, 1.0))
    return int(colour[0]), int(colour[1]), int(colour[2])


def render_confusion(confusion: np.ndarray, labels: Sequence[str], title: str = "",
                     normalize: bool = True) -> np.ndarray:
    """Return a BGR uint8 image of ``confusion`` ((K, K) counts; rows true, columns predicted)."""
    counts = np.asarray(confusion, dtype=np.int64)
    k = counts.shape[0]
    if counts.shape != (k, len(labels)) or k == 0:
        raise ValueError(f"confusion matrix {counts.shape} does not match {len(labels)} labels")
    labels = [str(label) for label in labels]
    row_sums = counts.sum(axis=1)
    fractions = np.zeros(counts.shape, np.float64)
    np.divide(counts, row_sums[:, None], out=fractions, where=row_sums[:, None] > 0)
    shade = fractions if normalize else counts / max(int(counts.max()), 1)

    label_scale, cell_scale, small_scale, title_scale = 0.5, 0.55, 0.4, 0.6
    cell_texts = [f"{counts.max():d}", "0.00", f"({counts.max():d})"]
    label_w = max(_text_size(label, label_scale)[0] for label in labels)
    # Wide enough for the numbers, and for column names up to about "surprise"; longer ones go vertical.
    cell = max(64, max(_text_size(t, cell_scale)[0] for t in cell_texts) + 14, min(label_w + 12, 92))
    columns_vertical = label_w > cell - 6
    axis_band = 26  # room for the rotated "true class" axis title
    left = axis_band + label_w + 12
    top = 62  # title and legend lines
    col_band = (label_w + 14) if columns_vertical else 28
    bottom = col_band + 30  # column labels, then the "predicted class" axis title
    legend = ("cells: fraction of the true class (count)" if normalize else "cells: count") + \
        "; rows: true class, columns: predicted class"
    text_w = max(_text_size(title, title_scale)[0], _text_size(legend, small_scale)[0]) + 24
    width = max(left + k * cell + 16, text_w)
    height = top + k * cell + bottom
    img = np.full((height, width, 3), 255, np.uint8)

    _put(img, title, 12, 26, title_scale, _INK, 1)
    _put(img, legend, 12, 48, small_scale, (90, 90, 90))

    for i in range(k):
        y0 = top + i * cell
        for j in range(k):
            x0 = left + j * cell
            if row_sums[i] == 0:
                cv2.rectangle(img, (x0, y0), (x0 + cell - 1, y0 + cell - 1), _EMPTY, -1)
                _put_centred(img, "-", x0 + cell / 2, y0 + cell / 2, cell_scale, (120, 120, 120))
                continue
            colour = _shade(shade[i, j])
            cv2.rectangle(img, (x0, y0), (x0 + cell - 1, y0 + cell - 1), colour, -1)
            ink = _WHITE if shade[i, j] > 0.5 else _INK
            thick = 2 if i == j else 1
            if normalize:
                _put_centred(img, f"{fractions[i, j]:.2f}", x0 + cell / 2, y0 + cell / 2 - 8,
                             cell_scale, ink, thick)
                _put_centred(img, f"({counts[i, j]})", x0 + cell / 2, y0 + cell / 2 + 12, small_scale, ink)
            else:
                _put_centred(img, f"{counts[i, j]}", x0 + cell / 2, y0 + cell / 2, cell_scale, ink, thick)
        # Row label, right-aligned against the grid.
        w, h, _ = _text_size(labels[i], label_scale)
        _put(img, labels[i], left - 8 - w, y0 + cell / 2 + h / 2, label_scale, _INK)

    # Grid lines and frame.
    for t in range(k + 1):
        cv2.line(img, (left, top + t * cell), (left + k * cell, top + t * cell), (200, 200, 200), 1)
        cv2.line(img, (left + t * cell, top), (left + t * cell, top + k * cell), (200, 200, 200), 1)
    cv2.rectangle(img, (left, top), (left + k * cell, top + k * cell), (80, 80, 80), 1)

    grid_bottom = top + k * cell
    for j, label in enumerate(labels):
        cx = left + j * cell + cell / 2
        if columns_vertical:
            patch = _vertical_text(label, label_scale, _INK)
            _paste(img, patch, int(cx - patch.shape[1] / 2), grid_bottom + 6)
        else:
            _put_centred(img, label, cx, grid_bottom + 14, label_scale, _INK)

    _put_centred(img, "predicted class", left + k * cell / 2, grid_bottom + col_band + 14, label_scale, _INK)
    axis = _vertical_text("true class", label_scale, _INK)
    _paste(img, axis, 4, int(top + k * cell / 2 - axis.shape[0] / 2))
    return img
