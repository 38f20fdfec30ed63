"""One image in, labelled faces out: detect -> (align) -> classify, with per-stage timings in ms.

The CLI, the tests and the GUI's camera worker all run this same code. ``Pipeline``'s detector,
classifier and ``align`` flag are plain attributes, so the GUI may swap them between frames.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field

import numpy as np

from app.core.recognition.classifier import EmotionClassifier
from app.core.recognition.detection import (
    DEFAULT_DETECTOR,
    Detection,
    FaceDetector,
    align_face,
    create_detector,
    crop_face,
    detector_available,
    find_landmarks,
)
from app.core.errors import DetectorError, ModelLoadError
from app.core.model_io import default_model_path, load_model

logger = logging.getLogger(__name__)

Box = tuple[int, int, int, int]


@dataclass
class Face:
    """A labelled face: box (x, y, w, h) in image pixels, top label and its probability, all probabilities."""

    box: Box
    label: str
    score: float
    probabilities: dict[str, float]  # in the model's label order
    landmarks: np.ndarray | None = None
    track_id: int | None = None


@dataclass
class FrameResult:
    """The faces of one image and how long each stage took (ms): detect, align, classify, total."""

    faces: list[Face] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


class Pipeline:
    """Detect faces, optionally level their eyes, and classify all of them in one batched call."""

    def __init__(self, detector: FaceDetector, classifier: EmotionClassifier, align: bool = False) -> None:
        self.detector = detector
        self.classifier = classifier
        self.align = align

    @property
    def labels(self) -> tuple[str, ...]:
        return self.classifier.labels

    def process(self, image_bgr: np.ndarray) -> FrameResult:
        """Label every face of one BGR image."""
        start = time.perf_counter()
        detections = self.detector.detect(image_bgr)
        detected = time.perf_counter()
        detections, crops = self._crops(image_bgr, detections)
        aligned = time.perf_counter()
        probabilities = self.classifier.predict(crops)
        classified = time.perf_counter()

        labels = self.classifier.labels
        faces = []
        for det, row in zip(detections, probabilities):
            best = int(np.argmax(row))
            faces.append(Face(
                box=tuple(int(v) for v in det.box),  # type: ignore[arg-type]
                label=labels[best],
                score=float(row[best]),
                probabilities={name: float(p) for name, p in zip(labels, row)},
                landmarks=det.landmarks,
            ))
        end = time.perf_counter()
        timings = {
            "detect": (detected - start) * 1000.0,
            "align": (aligned - detected) * 1000.0,
            "classify": (classified - aligned) * 1000.0,
            "total": (end - start) * 1000.0,
        }
        return FrameResult(faces=faces, timings=timings)

    def _crops(self, image_bgr: np.ndarray,
               detections: list[Detection]) -> tuple[list[Detection], list[np.ndarray]]:
        """(detections, crops); with ``align`` the detections come back with their landmarks."""
        if not detections:
            return [], []
        if not self.align:
            return detections, [crop_face(image_bgr, d.box) for d in detections]
        detections = list(detections)
        missing = [i for i, d in enumerate(detections) if d.landmarks is None]
        for i, det in zip(missing, find_landmarks(image_bgr, [detections[i] for i in missing])):
            detections[i] = det
        size = self.classifier.spec.input_size
        return detections, [align_face(image_bgr, d, size) for d in detections]


def build_pipeline(
    model_path: str | os.PathLike[str] | None,
    detector: str | FaceDetector = DEFAULT_DETECTOR,
    align: bool = False,
    tta: bool = False,
    trust: bool = False,
    labels: list[str] | tuple[str, ...] | None = None,
    normalization: str | None = None,
) -> Pipeline:
    """Load a model (``None``: the bundled default) and a detector (a name or an instance) into a Pipeline.

    Call it in the thread that will run the pipeline: the model is built and traced there.
    """
    path = model_path if model_path is not None else default_model_path()
    if path is None:
        raise ModelLoadError("no model given and no default model is bundled; choose a model file "
                             "(.h5, .hdf5 or .keras), e.g. with --model FILE.")
    face_detector = create_detector(detector) if isinstance(detector, str) else detector
    if align and detector_available("landmarks"):
        raise DetectorError("alignment needs dlib and face_recognition (for the eye landmarks), which are "
                            "not installed; install them or turn alignment off.")
    loaded = load_model(path, trust=trust, labels=labels, normalization=normalization)
    return Pipeline(face_detector, EmotionClassifier(loaded, tta=tta), align=align)
