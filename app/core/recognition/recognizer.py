"""A long-lived recognition state: the current model, detector and options, swapped one piece at a time.

The camera worker holds one :class:`Recognizer` for its whole life (models, detectors and options change
under it while a video runs); ``fer-studio analyze`` may hold one per video. It runs nothing itself: every
frame and photo goes through a :class:`~app.core.recognition.pipeline.Pipeline`, one for photos (full
resolution, no tracker) and one for live video (searched at ``video_size``, with the tracker).

Qt-free. Use it from one thread (the model is loaded and called in the thread that uses it). Nothing
heavy happens in the constructor: the detector (dlib, for HOG) is created on first use, in that thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from app.core.errors import ModelLoadError
from app.core.recognition.classifier import DEFAULT_UNCERTAIN_BELOW
from app.core.recognition.detection import (
    DEFAULT_DETECTOR,
    DEFAULT_VIDEO_SIZE,
    VIDEO_SIZES,
    FaceDetector,
    create_detector,
)
from app.core.recognition.pipeline import Face, FaceFilter, FrameResult, Pipeline, check_uncertain_below
from app.core.recognition.tracking import FaceTracker
from app.core.tf_quiet import import_tensorflow_quietly

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_VIDEO_SIZE", "VIDEO_SIZES", "ModelInfo", "Recognizer"]


@dataclass(frozen=True)
class ModelInfo:
    """What the GUI shows about the loaded model."""

    path: str
    labels: tuple[str, ...]
    input_size: tuple[int, int]  # (height, width)
    channels: int
    normalization: str
    spec_source: str = "embedded"
    precision: str = "float32"  # what the classifier computes in (recognition/precision.py)
    own_tta: str = "none"  # the model's own test-time augmentation (what the "own" option runs)

    def summary(self) -> str:
        h, w = self.input_size
        colour = "grey" if self.channels == 1 else "RGB"
        return (f"{Path(self.path).name}: {w}×{h} {colour}, {self.precision}, own TTA {self.own_tta} → "
                f"{', '.join(self.labels)}")


class Recognizer:
    """Holds the current detector, classifier, tracker and options; runs frames and photos through them.

    ``load``/``set_detector``/``set_video_size`` build the new piece first and swap it in only when that
    succeeded, so an error leaves the previous one running.
    """

    def __init__(self, detector: str | None = None, *, align: bool = False, tta: bool | str = False,
                 video_size: int = DEFAULT_VIDEO_SIZE, smoothing: bool = True, min_face_size: int = 0,
                 min_score: float = 0.0, uncertain_below: float = DEFAULT_UNCERTAIN_BELOW) -> None:
        self.detector_name = detector or DEFAULT_DETECTOR
        self.uncertain_below = check_uncertain_below(uncertain_below)
        self.align = align
        self.tta = tta
        self.video_size = int(video_size)
        self.face_filter = FaceFilter(int(min_face_size), float(min_score))
        self.tracker = FaceTracker(smoothing=smoothing)
        self._detectors: dict[bool, FaceDetector] = {}  # video? -> detector, created on first use
        self._loaded: Any = None  # model_io.LoadedModel
        self._classifier: Any = None  # EmotionClassifier
        self.info: ModelInfo | None = None

    @property
    def labels(self) -> tuple[str, ...]:
        return self.info.labels if self.info else ()

    @property
    def has_model(self) -> bool:
        return self._classifier is not None

    # ------------------------------------------------------------------------------------ swapping

    def load(self, path: str, trust: bool = False) -> ModelInfo:
        """Load and warm up a model; raises ModelLoadError and leaves the old one in place on failure."""
        from app.core.model_io import load_model
        from app.core.recognition.classifier import EmotionClassifier, set_inference_threads

        start = time.perf_counter()
        import_tensorflow_quietly()  # the window's terminal gets no TensorFlow start-up notices either
        if self._classifier is None:
            # One TensorFlow thread per op: a 1-8 face batch runs faster (bench/classifier.py) and the other
            # core stays free for capture, detection and drawing. Only possible before TF's first op.
            set_inference_threads(1)
        loaded = load_model(path, trust=trust)
        classifier = EmotionClassifier(loaded, tta=self.tta)
        self._check(classifier, loaded)
        self._loaded, self._classifier = loaded, classifier
        spec = loaded.spec
        self.info = ModelInfo(str(path), tuple(spec.labels), tuple(spec.input_size), spec.channels,
                              spec.normalization, getattr(loaded, "spec_source", "embedded"), classifier.precision,
                              spec.tta)
        self.tracker.reset()  # smoothed probabilities of another label set mean nothing now
        logger.info("model %s ready in %.0f ms", path, (time.perf_counter() - start) * 1000)
        return self.info

    @staticmethod
    def _check(classifier: Any, loaded: Any) -> None:
        # A wrong-shaped model fails here, before it replaces a working one (the classifier has traced).
        h, w = loaded.spec.input_size
        probabilities = np.asarray(classifier.predict([np.full((max(h, 32), max(w, 32), 3), 128, np.uint8)]))
        if probabilities.shape != (1, len(loaded.spec.labels)):
            raise ModelLoadError(f"{loaded.path}: the model returned shape {probabilities.shape} for one "
                                 f"face; expected (1, {len(loaded.spec.labels)}).")

    def unload(self) -> None:
        self._loaded = self._classifier = None
        self.info = None
        self.tracker.reset()

    def set_detector(self, name: str) -> None:
        """Switch detectors (raises DetectorError, keeping the old one, when ``name`` cannot run here)."""
        detectors = {video: self._create_detector(name, video) for video in (False, True)}
        self._detectors, self.detector_name = detectors, name

    def set_video_size(self, size: int) -> None:
        """Long side (px) live frames are searched at; 0 = the detector's own default (as for photos)."""
        detector = self._create_detector(self.detector_name, True, int(size))
        self.video_size = int(size)
        self._detectors[True] = detector

    def set_options(self, *, align: bool | None = None, tta: bool | str | None = None,
                    smoothing: bool | None = None, min_face_size: int | None = None,
                    min_score: float | None = None, uncertain_below: float | None = None) -> None:
        """Change options between frames; a bad filter value raises ValueError and changes nothing."""
        if uncertain_below is not None:
            check_uncertain_below(uncertain_below)
        face_filter = replace(self.face_filter, **{k: v for k, v in (
            ("min_size", None if min_face_size is None else int(min_face_size)),
            ("min_score", None if min_score is None else float(min_score))) if v is not None})
        if tta is not None and tta != self.tta and self._loaded is not None:
            from app.core.recognition.classifier import EmotionClassifier

            classifier = EmotionClassifier(self._loaded, tta=tta)
            self._check(classifier, self._loaded)
            self._classifier = classifier
        if tta is not None:
            self.tta = tta
        if align is not None:
            self.align = align
        if smoothing is not None:
            self.tracker.smoothing = smoothing
        if uncertain_below is not None:
            self.uncertain_below = float(uncertain_below)
        self.face_filter = face_filter

    def reset_tracks(self) -> None:
        """A new source: forget every track (ids start again at 1)."""
        self.tracker.reset()

    def _create_detector(self, name: str, video: bool, size: int | None = None) -> FaceDetector:
        size = self.video_size if size is None else size
        if video and size:
            # Live video has a per-frame budget: searching a smaller copy is what keeps it live on two
            # cores (bench/pipeline.py); the smallest face found grows with the frame / size ratio.
            return create_detector(name, max_side=int(size))
        return create_detector(name)

    def _detector(self, video: bool) -> FaceDetector:
        if video not in self._detectors:
            self._detectors[video] = self._create_detector(self.detector_name, video)
        return self._detectors[video]

    # ----------------------------------------------------------------------------------- running

    def pipeline(self, video: bool) -> Pipeline:
        """The pipeline of the current pieces: for live video (tracked, ``video_size``) or for photos."""
        return Pipeline(self._detector(video), self._classifier, align=self.align,
                        tracker=self.tracker if video else None, face_filter=self.face_filter,
                        uncertain_below=self.uncertain_below)

    def process_frame(self, image: np.ndarray, time_s: float | None = None) -> FrameResult:
        """One live frame: searched at ``video_size``, faces tracked across calls."""
        return self.pipeline(True).process(image, time_s)

    def process_photo(self, image: np.ndarray) -> FrameResult:
        """One photo: searched at the detector's photo size, no tracking."""
        return self.pipeline(False).process(image)

    @staticmethod
    def annotate(image: np.ndarray, faces: Sequence[Face]) -> np.ndarray:
        """The frame drawn by the one overlay renderer (for the recorded video)."""
        from app.core.recognition.annotate import draw_faces

        return draw_faces(image, faces)
