"""The frame view: the live frame or photo, every face boxed with its label, score and track id.

The faces are drawn by the one overlay renderer (:func:`app.core.recognition.annotate.draw_faces`, the
same as photos from the CLI and recorded videos) onto a copy of the frame, once per frame or selection;
the view only scales that picture into the widget. A click on a face selects it (``face_clicked``).
:func:`render_annotated` draws the picture at the frame's full size, with probability bars, for snapshots.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Sequence

import numpy as np
from PyQt5.QtCore import QPointF, QRectF, Qt, pyqtSignal
from PyQt5.QtGui import QColor, QFont, QImage, QMouseEvent, QPainter, QPaintEvent
from PyQt5.QtWidgets import QSizePolicy, QWidget

from app.core.recognition.annotate import draw_faces, face_key

logger = logging.getLogger(__name__)

def largest_face_key(faces: Sequence[Any]) -> int | None:
    if not faces:
        return None
    index = max(range(len(faces)), key=lambda i: faces[i].box[2] * faces[i].box[3])
    return face_key(faces[index], index)


def find_face(faces: Sequence[Any], key: int | None) -> Any | None:
    for i, face in enumerate(faces):
        if face_key(face, i) == key:
            return face
    return None


def to_qimage(image: np.ndarray) -> QImage:
    """A QImage sharing the BGR (or grey) array's memory; keep the array alive while it is used."""
    if image.ndim == 2:
        h, w = image.shape
        return QImage(image.data, w, h, image.strides[0], QImage.Format_Grayscale8)
    h, w = image.shape[:2]
    return QImage(image.data, w, h, image.strides[0], QImage.Format_BGR888)


def render_annotated(image: np.ndarray, faces: Sequence[Any], selected: int | None = None) -> QImage:
    """The frame with its faces (and their probability bars) drawn at the frame's own size (a copy)."""
    drawn = np.ascontiguousarray(draw_faces(image, faces, bars=True, selected=selected))
    return to_qimage(drawn).copy()  # detached from ``drawn``, which goes out of scope


class VideoView(QWidget):
    """Shows one frame and its faces, scaled to fit; emits ``face_clicked(key)`` on a click on a face."""

    face_clicked = pyqtSignal(object)  # face key (int) or None for a click outside every face

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.setMinimumSize(320, 240)
        self.setAttribute(Qt.WA_OpaquePaintEvent)
        self._array: np.ndarray | None = None
        self._qimage: QImage | None = None  # the plain frame (sizes, placement)
        self._drawn: tuple[tuple[int | None, int], np.ndarray, QImage] | None = None  # (key, array, image)
        self.faces: list[Any] = []
        self.selected: int | None = None
        self.message = ""
        self.paint_ms = 0.0  # how long the last paint took (shown as "draw" in the status bar)

    # ---------------------------------------------------------------------------------------- content

    def set_frame(self, image: np.ndarray, faces: Sequence[Any], selected: int | None = None) -> None:
        self._array = np.ascontiguousarray(image)
        self._qimage = to_qimage(self._array)
        self._drawn = None
        self.faces = list(faces)
        self.selected = selected
        self.update()

    def set_selected(self, key: int | None) -> None:
        if key != self.selected:
            self.selected = key
            self.update()

    def set_message(self, text: str) -> None:
        self.message = text
        self.update()

    def clear(self, message: str = "") -> None:
        self._array, self._qimage, self._drawn, self.faces, self.selected = None, None, None, [], None
        self.set_message(message)

    @property
    def frame(self) -> np.ndarray | None:
        return self._array

    def annotated_image(self) -> QImage | None:
        """The current frame with its faces drawn at full size, or None when nothing is shown."""
        if self._array is None:
            return None
        return render_annotated(self._array, self.faces, self.selected)

    # --------------------------------------------------------------------------------------- geometry

    def _placement(self) -> tuple[float, QPointF]:
        assert self._qimage is not None
        iw, ih = self._qimage.width(), self._qimage.height()
        scale = min(self.width() / iw, self.height() / ih) if iw and ih else 1.0
        offset = QPointF((self.width() - iw * scale) / 2, (self.height() - ih * scale) / 2)
        return scale, offset

    def face_at(self, pos: QPointF) -> int | None:
        """Key of the smallest face whose box contains the widget point ``pos``."""
        if self._qimage is None:
            return None
        scale, offset = self._placement()
        x, y = (pos.x() - offset.x()) / scale, (pos.y() - offset.y()) / scale
        hits = [(f.box[2] * f.box[3], face_key(f, i)) for i, f in enumerate(self.faces)
                if f.box[0] <= x <= f.box[0] + f.box[2] and f.box[1] <= y <= f.box[1] + f.box[3]]
        return min(hits)[1] if hits else None

    def widget_point(self, image_x: float, image_y: float) -> QPointF:
        """Where an image point lies in the widget (for tests and tooltips)."""
        scale, offset = self._placement()
        return QPointF(offset.x() + image_x * scale, offset.y() + image_y * scale)

    def _overlay(self, scale: float) -> QImage:
        """The frame with its faces drawn (cached until the frame, selection or line width changes)."""
        assert self._array is not None and self._qimage is not None
        if not self.faces:
            return self._qimage
        # Lines at least 2 screen pixels wide, however much the frame is shrunk to fit.
        key = (self.selected, max(1, math.ceil(2.0 / max(scale, 1e-3))))
        if self._drawn is None or self._drawn[0] != key:
            array = np.ascontiguousarray(draw_faces(self._array, self.faces, bars=False, selected=key[0],
                                                    min_line=key[1]))
            self._drawn = (key, array, to_qimage(array))
        return self._drawn[2]

    # ------------------------------------------------------------------------------------------ events

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.LeftButton:
            key = self.face_at(QPointF(event.pos()))
            if key is not None:
                self.set_selected(key)
            self.face_clicked.emit(key)
        super().mousePressEvent(event)

    def paintEvent(self, event: QPaintEvent) -> None:
        start = time.perf_counter()
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(24, 24, 28))
        if self._qimage is not None:
            scale, offset = self._placement()
            size = self._qimage.size()
            target = QRectF(offset.x(), offset.y(), size.width() * scale, size.height() * scale)
            painter.setRenderHint(QPainter.SmoothPixmapTransform)
            painter.drawImage(target, self._overlay(scale))
        if self.message:
            painter.setPen(QColor(230, 230, 230))
            font = QFont(painter.font())
            font.setPixelSize(16)
            painter.setFont(font)
            area = QRectF(self.rect()).adjusted(16, 16, -16, -16)
            align = Qt.AlignHCenter | (Qt.AlignBottom if self._qimage is not None else Qt.AlignVCenter)
            painter.drawText(area, int(align) | Qt.TextWordWrap, self.message)
        painter.end()
        self.paint_ms = (time.perf_counter() - start) * 1000
