"""One video file in, one folder out: faces.csv, summary.json, report.html and (optionally) annotated.mp4.

:func:`analyze_video` runs each decoded frame through the recognition pipeline (the same one the window
and ``predict`` use), gives faces person numbers with the re-identifying tracker, and writes as it goes.
The caller builds the pipeline once for a whole batch and may stop a run at any time with a
``threading.Event``: the files written so far stay valid, and the summary and report say the analysis
was interrupted.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.core.analysis.detect_ahead import DetectAhead, GivenDetections
from app.core.analysis.outputs import AnnotatedVideo, FacesCsv, new_folder
from app.core.analysis.report import render_report
from app.core.analysis.summary import SummaryBuilder
from app.core.analysis.video import DecodedFrame, FrameReader, VideoInfo, probe_video
from app.core.errors import OutputError
from app.core.files import atomic_write_bytes
from app.core.recognition.tracking import FaceTracker

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnalysisOptions:
    """How to analyse: every Nth frame, an annotated video or not, and what to name in the report."""

    every: int = 1
    annotated_video: bool = False
    model_name: str = ""
    detector: str = ""
    tta: bool | str = False  # False/"none", True/"flip" or "crops"
    reid: bool = True
    #: Threads detecting faces ahead of the classifier (1: detect in line, on the calling thread).
    detect_workers: int = 2


@dataclass
class Progress:
    """Where a running analysis is; ``total`` is the container's frame count (0 when unknown)."""

    video: str
    frames_read: int
    total: int
    analysed: int
    faces: int
    people: int
    elapsed_s: float

    @property
    def fps(self) -> float:
        """Frames of the file gone through per second (skipped ones included)."""
        return self.frames_read / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        if not self.total or not self.frames_read:
            return None
        return max(0.0, (self.total - self.frames_read) / max(self.fps, 1e-9))


@dataclass
class AnalysisResult:
    """What became of one video: ``status`` is "done", "interrupted" or "partial" (the file ended early)."""

    video: Path
    folder: Path
    status: str
    frames_analysed: int
    faces: int
    people: int
    seconds: float
    files: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def speed(self) -> float:
        return self.frames_analysed / self.seconds if self.seconds > 0 else 0.0


def detector_factory(detector: str | None = None, detect_size: int | None = None) -> Callable[[], Any]:
    """A function making the detector ``analyze`` uses, searching each frame at ``detect_size`` pixels.

    None = as the live view (``VIDEO_OPTIONS``), 0 = the detector's photo setting. Each call makes a new
    detector (each detection thread needs its own). Raises DetectorError now for an unknown detector.
    """
    from app.core.recognition.detection import (
        DEFAULT_DETECTOR,
        VIDEO_OPTIONS,
        create_detector,
    )

    name = detector or DEFAULT_DETECTOR
    options = dict(VIDEO_OPTIONS.get(name, {}))
    if detect_size is not None:
        if 0 < detect_size < 32:
            raise ValueError(f"the detection size must be 0 or at least 32 pixels, got {detect_size}")
        options = {"max_side": int(detect_size)} if detect_size else {}

    def make() -> Any:
        return create_detector(name, **options)

    make()  # fail now, not in a worker thread
    return make


def build_analysis_pipeline(model: str | Path | None = None, detector: str | None = None,
                            detect_size: int | None = None, tta: bool | str = False, **model_options: Any) -> Any:
    """The pipeline ``analyze`` runs: the model (None: the bundled default), the detector at ``detect_size``.

    TensorFlow gets one thread per op: the other threads decode and detect. ``model_options`` (trust,
    labels, normalization, align, min_face_size, min_score) go to ``build_pipeline``.
    """
    from app.core.recognition.classifier import set_inference_threads
    from app.core.recognition.pipeline import build_pipeline

    make = detector_factory(detector, detect_size)
    set_inference_threads(1)
    return build_pipeline(model, detector=make(), tta=tta, **model_options)


def analyze_video(path: str | Path, out_parent: str | Path, pipeline: Any, options: AnalysisOptions,
                  *, on_progress: Callable[[Progress], None] | None = None,
                  stop: threading.Event | None = None, tracker: FaceTracker | None = None,
                  draw: Callable[[np.ndarray, list[Any]], np.ndarray] | None = None,
                  make_detector: Callable[[], Any] | None = None) -> AnalysisResult:
    """Analyse one video file into a new folder under ``out_parent``.

    Raises SourceError (not a video, no frames, undecodable) or OutputError (folder not writable)
    before anything is written. ``pipeline`` is a :class:`~app.core.recognition.pipeline.Pipeline`;
    its ``tracker`` is replaced by ``tracker`` (default: a new re-identifying one) for this video.
    ``draw`` renders the annotated video (default: the overlay renderer). With ``make_detector`` (see
    :func:`detector_factory`) and ``options.detect_workers`` > 1, faces are detected on that many threads
    ahead of the pipeline (the pipeline's own detector is put back afterwards).
    """
    info = probe_video(path)
    folder = new_folder(out_parent, info.path.stem)
    stop = stop or threading.Event()
    # A fresh tracker per video, without smoothing: the CSV keeps each frame's own probabilities.
    tracker = tracker or FaceTracker(smoothing=False, reid=options.reid)
    pipeline.tracker = tracker
    labels = tuple(pipeline.labels)
    faces_csv = FacesCsv(folder / "faces.csv", labels)
    annotated: AnnotatedVideo | None = None
    if options.annotated_video:
        if draw is None:
            from app.core.recognition.annotate import draw_faces as draw
        try:
            annotated = AnnotatedVideo(folder / "annotated.mp4", info.fps, (info.width, info.height))
        except OutputError:
            faces_csv.close()
            raise
    summary = SummaryBuilder(labels)
    reader = FrameReader(info, every=options.every, stop_event=stop)
    start = time.perf_counter()
    error: str | None = None
    last_index = -1
    try:
        for decoded, detections in _detected(reader, pipeline, options, make_detector):
            if stop.is_set():  # frames already decoded ahead are not analysed after a stop
                break
            last_index = decoded.index
            if detections is not None:
                pipeline.detector.detections = detections
            faces = pipeline.process(decoded.image, decoded.time_s).faces
            faces_csv.write(decoded.index, decoded.time_s, faces)
            summary.add(decoded.index, decoded.time_s, decoded.image, faces)
            if annotated is not None:
                annotated.write(draw(decoded.image, faces))  # type: ignore[misc]
            if on_progress is not None:
                on_progress(Progress(str(info.path), reader.frames_read, info.frame_count, summary.frames,
                                     faces_csv.rows, len(summary.people), time.perf_counter() - start))
    except OutputError as exc:
        error = str(exc)
        stop.set()
    finally:
        if isinstance(pipeline.detector, GivenDetections):
            pipeline.detector = pipeline.detector.original
        reader.stop()
        faces_csv.close()
        if annotated is not None:
            annotated.close()
    seconds = time.perf_counter() - start
    interrupted = stop.is_set() and error is None
    status = "interrupted" if interrupted else ("partial" if reader.error or error else "done")
    notes = _notes(info, reader, options, last_index + 1 if interrupted else None, error)
    files = {"csv": str(faces_csv.path)}
    if annotated is not None:
        files["annotated_video"] = str(annotated.path)
    result = AnalysisResult(info.path, folder, status, summary.frames, faces_csv.rows, len(summary.people),
                            seconds, files, notes, error or reader.error)
    record = summary_dict(info, options, summary, result, reader, tracker)
    try:
        files["summary"] = str(atomic_write_bytes(folder / "summary.json",
                                                  json.dumps(record, indent=1).encode(), "the summary"))
        files["report"] = str(atomic_write_bytes(folder / "report.html",
                                                 render_report(record, summary.ordered()).encode(), "the report"))
    except OutputError as exc:
        result.error = result.error or str(exc)
        result.status = "partial"
    return result


def _detected(reader: FrameReader, pipeline: Any, options: AnalysisOptions,
              make_detector: Callable[[], Any] | None) -> Iterator[tuple[DecodedFrame, list[Any] | None]]:
    """The reader's frames with their detections made ahead on threads, or with None (detect in line)."""
    if make_detector is None or options.detect_workers <= 1:
        for decoded in reader:
            yield decoded, None
        return
    pipeline.detector = GivenDetections(pipeline.detector)
    yield from DetectAhead(make_detector, options.detect_workers).run(reader)


def _notes(info: VideoInfo, reader: FrameReader, options: AnalysisOptions, stopped_at: int | None,
           error: str | None) -> list[str]:
    notes = []
    if stopped_at is not None:
        notes.append(f"The analysis was stopped after {stopped_at} of {info.frame_count or 'its'} frames; "
                     "the results cover the part before that.")
    if reader.error:
        notes.append(reader.error[0].upper() + reader.error[1:])
    if error:
        notes.append(error)
    if not reader.timestamps_regular:
        notes.append("The video has a variable frame rate: times come from the file's own timestamps"
                      + (" (the annotated video plays at the average rate)." if options.annotated_video else "."))
    if info.rotation:
        notes.append(f"The video carries {info.rotation}° rotation metadata (a phone video); its frames "
                     "were turned upright before analysis, so boxes refer to the upright frame.")
    return notes


def summary_dict(info: VideoInfo, options: AnalysisOptions, summary: SummaryBuilder, result: AnalysisResult,
                 reader: FrameReader, tracker: FaceTracker) -> dict[str, Any]:
    """Everything summary.json holds (the report is rendered from it plus the thumbnails)."""
    duration = info.duration_s
    people = summary.ordered()
    last = max((p.last_s for p in people), default=0.0)
    return {
        "video": str(info.path), "video_name": info.path.name, "output": str(result.folder),
        "status": result.status, "error": result.error, "notes": result.notes,
        "width": info.width, "height": info.height, "fps": round(info.fps, 3), "rotation": info.rotation,
        "variable_frame_rate": not reader.timestamps_regular,
        "duration_s": round(max(duration, last), 3), "frames_total": info.frame_count,
        "frames_read": reader.frames_read, "frames_analysed": summary.frames, "every": options.every,
        "frames_with_faces": summary.frames_with_faces, "faces": result.faces,
        "model_name": options.model_name, "detector": options.detector, "tta": options.tta,
        "labels": list(summary.labels), "face_encodings": tracker.encodings, "scene_cuts": tracker.cuts,
        "seconds": round(result.seconds, 2), "frames_per_second": round(result.speed, 2),
        "people": [p.to_dict() for p in people],
        "files": {**{k: Path(v).name for k, v in result.files.items()}, "summary": "summary.json",
                  "report": "report.html"},
    }
