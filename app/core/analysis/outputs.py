"""The files an analysis writes: its own new folder, ``faces.csv`` as it goes, the annotated video.

Nothing is ever overwritten: each video gets a folder that did not exist before (``name``, ``name-2``,
...), created exclusively, and each file in it is opened in exclusive-create mode. Since the folder is
new, no input can be inside it. The CSV is flushed after every frame, so a crash, a kill or a full disk
keeps every row written until then; the finished files (summary, report) are written atomically.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from app.core.errors import OutputError

logger = logging.getLogger(__name__)

BASE_COLUMNS: tuple[str, ...] = ("time_s", "frame", "person", "x", "y", "w", "h", "label", "score", "uncertain")


def prepare_parent(folder: str | os.PathLike[str]) -> Path:
    """Create ``folder`` (and parents) if needed and check it can be written; raises OutputError."""
    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path}: exists and is not a folder; choose an output folder with --out.")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{path}: cannot create the output folder ({exc.strerror or exc}); choose a "
                          "writable one with --out.") from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: the output folder is not writable; choose another with --out.")
    return path


def new_folder(parent: str | os.PathLike[str], name: str) -> Path:
    """A folder under ``parent`` that did not exist before: ``name``, else ``name-2``, ``name-3``, ..."""
    base = prepare_parent(parent)
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip(".") or "video"
    for n in range(1, 10_000):
        candidate = base / (stem if n == 1 else f"{stem}-{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise OutputError(f"{candidate}: cannot create the output folder ({exc.strerror or exc}); "
                              "choose a writable one with --out.") from exc
        return candidate
    raise OutputError(f"{base}: 10,000 folders named {stem}-N already exist; choose another --out.")


def probability_columns(labels: Sequence[str]) -> tuple[str, ...]:
    return tuple(f"p_{label}" for label in labels)


class FacesCsv:
    """``faces.csv``: one row per face per frame, flushed after each frame."""

    def __init__(self, path: Path, labels: Sequence[str]) -> None:
        self.path = path
        self.labels = tuple(labels)
        self.columns = BASE_COLUMNS + probability_columns(self.labels)
        self.rows = 0
        try:
            # "x": never over an existing file. Kept open for the whole run (closed by close()).
            self._file = open(path, "x", newline="", encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            raise OutputError(f"{path}: cannot create the CSV ({exc.strerror or exc}).") from exc
        self._writer = csv.writer(self._file)
        self._writer.writerow(self.columns)
        self._file.flush()

    def write(self, frame: int, time_s: float, faces: Sequence[Any]) -> None:
        """Append the rows of one frame's faces and flush them to the file."""
        if not faces:
            return
        for face in faces:
            x, y, w, h = (int(v) for v in face.box)
            probs = face.probabilities or {}
            self._writer.writerow([f"{time_s:.3f}", frame, "" if face.track_id is None else face.track_id,
                                   x, y, w, h, face.label, f"{float(face.score):.4f}",
                                   int(bool(getattr(face, "uncertain", False))),
                                   *(f"{float(probs.get(label, 0.0)):.4f}" for label in self.labels)])
        self.rows += len(faces)
        try:
            self._file.flush()
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot write ({exc.strerror or exc}); the rows written so "
                              "far are kept.") from exc

    def close(self) -> None:
        if not self._file.closed:
            try:
                self._file.close()
            except OSError as exc:
                logger.warning("closing %s: %s", self.path, exc)


def read_faces(path: str | os.PathLike[str], frame: int | None = None) -> list[dict[str, Any]]:
    """Rows of a ``faces.csv`` (all, or those of one ``frame``) with numbers parsed."""
    rows = []
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if frame is not None and int(row["frame"]) != frame:
                continue
            rows.append({
                "time_s": float(row["time_s"]), "frame": int(row["frame"]),
                "person": int(row["person"]) if row["person"] else None,
                "box": tuple(int(row[k]) for k in ("x", "y", "w", "h")),
                "label": row["label"], "score": float(row["score"]), "uncertain": row.get("uncertain") == "1",
                "probabilities": {k[2:]: float(v) for k, v in row.items() if k.startswith("p_")},
            })
    return rows


class AnnotatedVideo:
    """``annotated.mp4``: each analysed frame as drawn by the overlay renderer (mp4v, the source's rate)."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]) -> None:
        if path.exists():
            raise OutputError(f"{path}: exists; the annotated video is never written over a file.")
        self.path = path
        self.size = size
        self._writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps if fps > 0 else 30.0,
                                       size)
        if not self._writer.isOpened():
            raise OutputError(f"{path}: cannot write the annotated video (OpenCV's mp4v encoder is "
                              "unavailable); run without --annotated-video.")
        self.frames = 0

    def write(self, image: np.ndarray) -> None:
        if (image.shape[1], image.shape[0]) != self.size:
            image = cv2.resize(image, self.size)
        self._writer.write(image)
        self.frames += 1

    def close(self) -> None:
        self._writer.release()
