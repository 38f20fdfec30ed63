"""The worker's recognition state: detector, model and pipeline, swapped safely one piece at a time.

Qt-free, used only from the worker thread (the model is loaded and called in the thread that uses it).
Without a model, faces are still detected and boxed, with no label.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

logger = logging.getLogger(__name__)

#: Long side, in pixels, of the copy of each live frame that is searched for faces (see set_video_size).
DEFAULT_VIDEO_SIZE = 320
VIDEO_SIZES: tuple[int, ...] = (320, 480, 640, 0)


@dataclass(frozen=True)
class ModelInfo:
    """What the GUI shows about the loaded model."""

    path: str
    labels: tuple[str, ...]
    input_size: tuple[int, int]  # (height, width)
    channels: int
    normalization: str
    spec_source: str = "embedded"

    def summary(self) -> str:
        h, w = self.input_size
        colour = "grey" if self.channels == 1 else "RGB"
        return f"{Path(self.path).name}: {w}×{h} {colour} → {', '.join(self.labels)}"


class Recognizer:
    """Holds the current detector and classifier and runs one image through them.

    ``load``/``set_detector`` build the new piece first and swap it in only when that succeeded, so an
    error leaves the previous one running.
    """

    def __init__(self, detector: str | None = None, *, align: bool = False, tta: bool = False,
                 video_size: int = DEFAULT_VIDEO_SIZE) -> None:
        from app.core.recognition.detection import DEFAULT_DETECTOR

        self.detector_name = detector or DEFAULT_DETECTOR
        self.align = align
        self.tta = tta
        self.video_size = video_size
        self._detectors: dict[bool, Any] = {}  # video? -> detector
        self._loaded: Any = None  # model_io.LoadedModel
        self._classifier: Any = None
        self._pipelines: dict[bool, Any] = {}
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
        from app.core.recognition.classifier import EmotionClassifier, set_inference_threads
        from app.core.model_io import load_model

        start = time.perf_counter()
        if self._classifier is None:
            # One TensorFlow thread per op: a 1-8 face batch runs faster (bench/classifier.py) and the other
            # core stays free for capture, detection and drawing. Only possible before TF's first op.
            set_inference_threads(1)
        loaded = load_model(path, trust=trust)
        classifier = EmotionClassifier(loaded, tta=self.tta)
        self._warm_up(classifier, loaded)
        self._loaded, self._classifier = loaded, classifier
        spec = loaded.spec
        self.info = ModelInfo(str(path), tuple(spec.labels), tuple(spec.input_size), spec.channels,
                              spec.normalization, getattr(loaded, "spec_source", "embedded"))
        self._rebuild()
        logger.info("model %s ready in %.0f ms", path, (time.perf_counter() - start) * 1000)
        return self.info

    @staticmethod
    def _warm_up(classifier: Any, loaded: Any) -> None:
        # The first call traces and compiles; do it now rather than on the first face of the video.
        # A wrong-shaped model fails here too, before it replaces a working one.
        h, w = loaded.spec.input_size
        crop = np.full((max(h, 32), max(w, 32), 3), 128, np.uint8)
        probabilities = np.asarray(classifier.predict([crop]))
        if probabilities.shape != (1, len(loaded.spec.labels)):
            from app.core.errors import ModelLoadError

            raise ModelLoadError(f"{loaded.path}: the model returned shape {probabilities.shape} for one "
                                 f"face; expected (1, {len(loaded.spec.labels)}).")

    def unload(self) -> None:
        self._loaded = self._classifier = None
        self.info = None
        self._rebuild()

    def set_detector(self, name: str) -> None:
        detectors = {video: self._create_detector(name, video) for video in (False, True)}  # may raise
        self._detectors, self.detector_name = detectors, name
        self._rebuild()

    def set_video_size(self, size: int) -> None:
        """Long side (px) live frames are searched at; 0 = the detector's own default (as for photos)."""
        detector = self._create_detector(self.detector_name, True, size)
        self.video_size = size
        self._detectors[True] = detector
        self._rebuild()

    def _create_detector(self, name: str, video: bool, size: int | None = None) -> Any:
        from app.core.recognition.detection import create_detector

        size = self.video_size if size is None else size
        if video and size:
            # Live video has a per-frame budget: searching a smaller copy is what makes 30 frames/s
            # possible on two cores (bench/pipeline.py); faces smaller than ~1/13 of it are not looked for.
            return create_detector(name, max_side=int(size))
        return create_detector(name)

    def set_options(self, *, align: bool | None = None, tta: bool | None = None) -> None:
        if align is not None:
            self.align = align
        if tta is not None and tta != self.tta and self._loaded is not None:
            from app.core.recognition.classifier import EmotionClassifier

            classifier = EmotionClassifier(self._loaded, tta=tta)
            self._warm_up(classifier, self._loaded)
            self._classifier = classifier
        if tta is not None:
            self.tta = tta
        self._rebuild()

    def _ensure_detector(self, video: bool) -> Any:
        if video not in self._detectors:
            self._detectors[video] = self._create_detector(self.detector_name, video)
        return self._detectors[video]

    def _rebuild(self) -> None:
        self._pipelines = {}  # rebuilt lazily with the current pieces

    # ----------------------------------------------------------------------------------- running

    def process(self, image: np.ndarray, video: bool = False) -> tuple[list[Any], dict[str, float]]:
        """Faces (app.core.recognition.pipeline.Face) and per-stage timings in ms for one BGR image.

        ``video``: a live frame, searched at ``video_size``; photos use the detector's full size.
        """
        from app.core.recognition.pipeline import Face, Pipeline

        detector = self._ensure_detector(video)
        if self._classifier is not None:
            pipeline = self._pipelines.get(video)
            if pipeline is None:
                pipeline = self._pipelines[video] = Pipeline(detector, self._classifier, align=self.align)
            result = pipeline.process(image)
            return list(result.faces), dict(result.timings)
        # No model: detection only, so the user still sees where the faces are.
        start = time.perf_counter()
        detections = detector.detect(image)
        detect_ms = (time.perf_counter() - start) * 1000
        faces = [Face(box=tuple(int(v) for v in d.box), label="", score=float(d.score), probabilities={},
                      landmarks=d.landmarks) for d in detections]
        return faces, {"detect": detect_ms, "align": 0.0, "classify": 0.0, "total": detect_ms}

    def annotate(self, image: np.ndarray, faces: Sequence[Any]) -> np.ndarray:
        """The frame drawn as the CLI draws it (for the recorded video)."""
        try:
            from app.core.recognition.annotate import annotate_image
        except ImportError:  # the CLI's drawing module is missing in this build: plain boxes and labels
            return _draw_plain(image, faces)
        return annotate_image(image, faces)


def _draw_plain(image: np.ndarray, faces: Sequence[Any]) -> np.ndarray:
    import cv2

    from app.core.labels import colour_for

    for face in faces:
        x, y, w, h = (int(v) for v in face.box)
        r, g, b = colour_for(face.label) if face.label else (0, 200, 255)
        cv2.rectangle(image, (x, y), (x + w, y + h), (b, g, r), 2)
        caption = " ".join(p for p in (f"#{face.track_id}" if face.track_id is not None else "",
                                       f"{face.label} {face.score:.0%}" if face.label else "") if p)
        if caption:
            cv2.putText(image, caption, (x, max(12, y - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (b, g, r), 1,
                        cv2.LINE_AA)
    return image
