"""Record per-face results of a video to CSV (and optionally an annotated video), flushed every frame.

One CSV row per face per frame: time, frame, track id, box, label, score and one column per label's
probability. Each frame's rows are flushed as they are written, so a crash loses nothing already written
(this is why the CSV is written in place rather than to a temporary name renamed at the end).

The annotated video never replaces a file silently: :func:`free_video_path` picks a name beside the CSV
that is neither an existing file nor the source being recorded, and :class:`ResultRecorder` refuses an
existing video unless told it may replace it (after the user was asked).
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from app.core.errors import OutputError

logger = logging.getLogger(__name__)

BASE_COLUMNS: tuple[str, ...] = ("time_s", "frame", "track_id", "x", "y", "w", "h", "label", "score")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def free_video_path(csv_path: str | os.PathLike[str], source: str | os.PathLike[str] | None = None,
                    suffix: str = ".mp4") -> Path:
    """``<csv stem>.mp4`` beside the CSV, or ``<stem>-2.mp4``, ``-3``... while that exists or is ``source``."""
    base = Path(csv_path).with_suffix(suffix)
    candidate, n = base, 1
    while candidate.exists() or (source is not None and _same_file(candidate, Path(source))):
        n += 1
        candidate = base.with_name(f"{base.stem}-{n}{suffix}")
    return candidate


def check_outputs(csv_path: str | os.PathLike[str], video_path: str | os.PathLike[str] | None,
                  source: str | os.PathLike[str] | None) -> None:
    """Raise OutputError when the CSV or the video would be written over the source being recorded."""
    if source is None:
        return
    for kind, path in (("CSV", csv_path), ("video", video_path)):
        if path is not None and _same_file(Path(path), Path(source)):
            raise OutputError(f"the recorded {kind} {path} would replace the video being recorded; "
                              "choose another name.")


class ResultRecorder:
    """Writes faces frame by frame; ``labels`` fixes the probability columns (``p_<label>``).

    ``video_path`` (optional) also writes each frame, drawn by ``annotate(image, faces) -> image``, with
    OpenCV's mp4v codec at ``fps``. An existing video there is an OutputError unless ``overwrite_video``.
    """

    def __init__(self, csv_path: str | os.PathLike[str], labels: Sequence[str], *,
                 video_path: str | os.PathLike[str] | None = None, fps: float = 30.0,
                 annotate: Callable[[np.ndarray, Sequence[Any]], np.ndarray] | None = None,
                 overwrite_video: bool = False) -> None:
        self.csv_path = Path(csv_path)
        self.video_path = Path(video_path) if video_path else None
        if self.video_path is not None and self.video_path.exists() and not overwrite_video:
            raise OutputError(f"{self.video_path} exists already; choose another name for the annotated video "
                              "(it is never replaced without asking).")
        self.labels = tuple(labels)
        self.fps = fps if fps > 0 else 30.0
        self._annotate = annotate
        self._writer_video: Any = None
        self.rows = 0
        self.frames = 0
        try:
            self.csv_path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.csv_path, "w", newline="", encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"cannot write the recording {self.csv_path}: {exc}") from exc
        self.columns = BASE_COLUMNS + tuple(f"p_{label}" for label in self.labels)
        self._csv = csv.DictWriter(self._file, fieldnames=self.columns, extrasaction="ignore")
        self._csv.writeheader()
        self._file.flush()
        logger.info("recording to %s%s", self.csv_path, f" and {self.video_path}" if self.video_path else "")

    def write(self, time_s: float, frame_index: int, faces: Sequence[Any],
              image: np.ndarray | None = None) -> None:
        """Append this frame's faces (and the annotated frame to the video, if any), then flush."""
        for face in faces:
            x, y, w, h = (int(v) for v in face.box)
            row: dict[str, Any] = {
                "time_s": f"{time_s:.3f}", "frame": frame_index,
                "track_id": "" if face.track_id is None else face.track_id,
                "x": x, "y": y, "w": w, "h": h, "label": face.label, "score": f"{float(face.score):.4f}",
            }
            for label, p in (face.probabilities or {}).items():
                row[f"p_{label}"] = f"{float(p):.4f}"
            self._csv.writerow(row)
            self.rows += 1
        self._file.flush()
        if self.video_path is not None and image is not None:
            self._write_video(image, faces)
        self.frames += 1

    def _write_video(self, image: np.ndarray, faces: Sequence[Any]) -> None:
        import cv2

        if self._writer_video is None:
            h, w = image.shape[:2]
            self.video_path.parent.mkdir(parents=True, exist_ok=True)  # type: ignore[union-attr]
            writer = cv2.VideoWriter(str(self.video_path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not writer.isOpened():
                self.video_path = None
                raise OutputError("cannot write the annotated video (the mp4v encoder is unavailable); "
                                  "the CSV recording goes on.")
            self._writer_video = writer
            self._size = (w, h)
        drawn = self._annotate(image.copy(), faces) if self._annotate else image
        if (drawn.shape[1], drawn.shape[0]) != self._size:  # the source changed size mid-recording
            drawn = cv2.resize(drawn, self._size)
        self._writer_video.write(drawn)

    def close(self) -> None:
        if self._writer_video is not None:
            self._writer_video.release()
            self._writer_video = None
        if not self._file.closed:
            self._file.close()
            logger.info("recording closed: %d frames, %d face rows in %s", self.frames, self.rows,
                        self.csv_path)
