"""The one overlay renderer: recognition results drawn onto a copy of a frame or photo with OpenCV.

Used for ``fer-studio predict --annotate``, the recorded (and analysed) videos, the window's live view and
its snapshots. Each face gets a box in its label's colour, "#track label 91%" above it, and (``bars``) a
small panel of per-class probability bars beside it. Sizes follow each face's size, so a 12000x8000 photo
and a 640x480 frame both come out legible. A face without a label (no model loaded) is boxed in cyan.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np

from app.core.labels import colour_for

if TYPE_CHECKING:
    from app.core.recognition.pipeline import Face

logger = logging.getLogger(__name__)

_FONT = cv2.FONT_HERSHEY_SIMPLEX


#: BGR colour of a face without a label (no model loaded).
NO_LABEL_BGR: tuple[int, int, int] = (255, 200, 0)


#: BGR colour of an "uncertain" face (its top probability is below the threshold).
UNCERTAIN_BGR: tuple[int, int, int] = (150, 150, 150)


def _bgr(label: str, uncertain: bool = False) -> tuple[int, int, int]:
    if not label:
        return NO_LABEL_BGR
    if uncertain:
        return UNCERTAIN_BGR
    r, g, b = colour_for(label)
    return b, g, r


def face_key(face: Face, index: int) -> int:
    """How a face is selected: its track id in video, its position in the list for photos."""
    return int(face.track_id) if face.track_id is not None else index


def caption(face: Face) -> str:
    """"#3 happy 91%": the track id (video) and the label with its probability (when classified);
    "#3 uncertain (happy 34%)" when the top probability is below the threshold."""
    parts = []
    if face.track_id is not None:
        parts.append(f"#{face.track_id}")
    if face.label and face.uncertain:
        parts.append(f"uncertain ({face.label} {float(face.score):.0%})")
    elif face.label:
        parts.append(f"{face.label} {float(face.score):.0%}")
    return " ".join(parts)


def _text_colour(bgr: tuple[int, int, int]) -> tuple[int, int, int]:
    luminance = 0.114 * bgr[0] + 0.587 * bgr[1] + 0.299 * bgr[2]
    return (0, 0, 0) if luminance > 140 else (255, 255, 255)


def _blend_rect(image: np.ndarray, x0: int, y0: int, x1: int, y1: int, colour: tuple[int, int, int],
                alpha: float) -> None:
    """Fill a rectangle with ``colour`` at ``alpha`` opacity (in place, clipped to the image)."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 <= x0 or y1 <= y0:
        return
    roi = image[y0:y1, x0:x1]
    overlay = np.empty_like(roi)
    overlay[:] = colour
    cv2.addWeighted(overlay, alpha, roi, 1.0 - alpha, 0.0, dst=roi)


def draw_faces(image_bgr: np.ndarray, faces: Sequence[Face], bars: bool = True,
               selected: int | None = None, min_line: int = 1) -> np.ndarray:
    """A copy of ``image_bgr`` with every face's box, caption and (``bars``) probability bars.

    ``selected`` (a :func:`face_key`) gets a thicker box and a white outline; ``min_line`` is the
    thinnest line in pixels (a view that shows the frame shrunk asks for thicker lines).
    """
    canvas = image_bgr.copy()
    if canvas.ndim == 2:
        canvas = cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGR)
    elif canvas.shape[2] == 4:
        canvas = cv2.cvtColor(canvas, cv2.COLOR_BGRA2BGR)
    width = canvas.shape[1]
    for index, face in enumerate(faces):
        x, y, w, h = (int(v) for v in face.box)
        colour = _bgr(face.label, face.uncertain)
        # Scale with the face, but stay readable on tiny faces and not absurd on huge ones.
        s = float(np.clip(h / 160.0, 0.35, 4.0))
        thickness = max(min_line, round(2 * s))
        is_selected = selected is not None and face_key(face, index) == selected
        if is_selected:
            thickness *= 2
            gap = thickness + 2
            cv2.rectangle(canvas, (x - gap, y - gap), (x + w - 1 + gap, y + h - 1 + gap), (255, 255, 255),
                          max(1, min_line), cv2.LINE_AA)
        cv2.rectangle(canvas, (x, y), (x + w - 1, y + h - 1), colour, thickness, cv2.LINE_AA)

        text = caption(face)
        if text:
            font_scale = 0.6 * s * max(1.0, min_line / 2)
            text_thick = max(1, round(1.5 * s))
            (tw, th), base = cv2.getTextSize(text, _FONT, font_scale, text_thick)
            pad = max(2, int(3 * s))
            ty = y - pad if y - th - base - 2 * pad >= 0 else y + h + th + pad  # above, else below the box
            cv2.rectangle(canvas, (x, ty - th - pad), (x + tw + 2 * pad, ty + base), colour, cv2.FILLED)
            cv2.putText(canvas, text, (x + pad, ty), _FONT, font_scale, _text_colour(colour), text_thick,
                        cv2.LINE_AA)
        if bars and face.probabilities:
            _draw_bars(canvas, face, x, y, w, s, width)
    return canvas


def _draw_bars(canvas: np.ndarray, face: Face, x: int, y: int, w: int, s: float, width: int) -> None:
    """One row per class: name, a bar as long as its probability; beside the box, right if it fits."""
    names = list(face.probabilities)
    row = max(8, round(14 * s))
    label_w = round(58 * s)
    bar_w = round(60 * s)
    pad = max(2, round(3 * s))
    panel_w = label_w + bar_w + 3 * pad
    panel_h = row * len(names) + 2 * pad
    px = x + w + pad if x + w + pad + panel_w <= width else max(0, x - pad - panel_w)
    py = max(0, y)
    _blend_rect(canvas, px, py, px + panel_w, py + panel_h, (30, 30, 30), 0.6)
    font_scale = 0.38 * s
    thick = max(1, round(s))
    for i, name in enumerate(names):
        p = float(face.probabilities[name])
        top = py + pad + i * row
        colour = _bgr(name)
        cv2.putText(canvas, name[:8], (px + pad, top + int(row * 0.78)), _FONT, font_scale, (235, 235, 235),
                    thick, cv2.LINE_AA)
        bx = px + 2 * pad + label_w
        length = round(bar_w * min(max(p, 0.0), 1.0))
        if length > 0:
            cv2.rectangle(canvas, (bx, top + 2), (bx + length, top + row - 2), colour, cv2.FILLED)
        cv2.rectangle(canvas, (bx, top + 2), (bx + bar_w, top + row - 2), (120, 120, 120), 1)
