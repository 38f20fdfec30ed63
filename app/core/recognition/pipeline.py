"""The one path a frame takes: detect -> filter -> (align) -> classify -> (track), with per-stage timings.

``Pipeline.process(image_bgr, time_s)`` is what the camera worker, ``fer-studio predict``, the benches and
the tests all run; ``fer-studio analyze`` builds on it too. Photos use a pipeline without a tracker; video
uses one with a :class:`~app.core.recognition.tracking.FaceTracker`, so each face carries a track id and
smoothed probabilities. Without a classifier, faces are still found and boxed, with an empty label.

A pipeline's parts (``detector``, ``classifier``, ``tracker``, ``align``, ``face_filter``) are plain
attributes: a long-lived owner (:class:`~app.core.recognition.recognizer.Recognizer`) may swap them
between frames. Create and call a pipeline in one thread: the classifier holds a Keras model.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field

import numpy as np

from app.core.errors import DetectorError, ModelLoadError
from app.core.model_io import default_model_path, load_model
from app.core.recognition.classifier import DEFAULT_UNCERTAIN_BELOW, OWN_TTA, EmotionClassifier, is_uncertain
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
from app.core.recognition.tracking import FaceTracker

logger = logging.getLogger(__name__)

Box = tuple[int, int, int, int]

#: The keys of :attr:`FrameResult.timings`, in pipeline order (milliseconds).
STAGES: tuple[str, ...] = ("detect", "align", "classify", "track", "total")


@dataclass
class Face:
    """A face in one image: box (x, y, w, h) in image pixels, top label and its probability, all of them.

    ``label`` is "" and ``probabilities`` empty when no model is loaded (the face is only boxed).
    ``track_id`` is set by a pipeline with a tracker (video); ``detection_score`` is the detector's 0..1
    confidence, comparable within one detector only.
    """

    box: Box
    label: str
    score: float
    probabilities: dict[str, float]  # in the model's label order
    landmarks: np.ndarray | None = None
    track_id: int | None = None
    detection_score: float = 1.0
    #: The top (calibrated) probability is below the pipeline's ``uncertain_below``: shown as "uncertain",
    #: with the top label and every probability still given.
    uncertain: bool = False


@dataclass
class FrameResult:
    """The faces of one image and how long each stage took (ms, keys :data:`STAGES`)."""

    faces: list[Face] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    time_s: float | None = None  # the frame's time in its video, as given to ``process``


@dataclass(frozen=True)
class FaceFilter:
    """Drops detections that are probably not faces: too small, or too unsure.

    ``min_size``: pixels of the box's shorter side, in the image given to the pipeline (0 keeps all).
    ``min_score``: the detector's 0..1 confidence (0 keeps all); its scale differs between detectors.
    """

    min_size: int = 0
    min_score: float = 0.0

    def __post_init__(self) -> None:
        if self.min_size < 0:
            raise ValueError(f"the minimum face size must be 0 or more pixels, got {self.min_size}")
        if not 0.0 <= self.min_score <= 1.0:
            raise ValueError(f"the detection score threshold must be between 0 and 1, got {self.min_score}")

    def keep(self, detections: list[Detection]) -> list[Detection]:
        if not self.min_size and not self.min_score:
            return detections
        return [d for d in detections
                if min(d.box[2], d.box[3]) >= self.min_size and d.score >= self.min_score]


class Pipeline:
    """Detect faces, filter them, optionally level their eyes, classify all in one batched call, track.

    ``classifier`` None: detection only. ``tracker`` None: no track ids (photos).
    """

    def __init__(self, detector: FaceDetector, classifier: EmotionClassifier | None, align: bool = False,
                 tracker: FaceTracker | None = None, face_filter: FaceFilter | None = None,
                 uncertain_below: float = DEFAULT_UNCERTAIN_BELOW) -> None:
        self.detector = detector
        self.classifier = classifier
        self.align = align
        self.tracker = tracker
        self.face_filter = face_filter or FaceFilter()
        self.uncertain_below = check_uncertain_below(uncertain_below)

    @property
    def labels(self) -> tuple[str, ...]:
        """The model's class names; () without a model."""
        return self.classifier.labels if self.classifier is not None else ()

    def process(self, image_bgr: np.ndarray, time_s: float | None = None) -> FrameResult:
        """Every face of one BGR image, labelled (and tracked, with a tracker); ``time_s`` is passed on."""
        start = time.perf_counter()
        detections = self.face_filter.keep(self.detector.detect(image_bgr))
        detected = time.perf_counter()
        faces: list[Face] = []
        aligned = classified = detected
        if self.classifier is not None:
            detections, crops = self._crops(image_bgr, detections)
            aligned = time.perf_counter()
            probabilities = self.classifier.predict(crops)
            classified = time.perf_counter()
            labels = self.classifier.labels
            for det, row in zip(detections, probabilities):
                best = int(np.argmax(row))
                faces.append(Face(
                    box=_int_box(det.box), label=labels[best], score=float(row[best]),
                    probabilities={name: float(p) for name, p in zip(labels, row)},
                    landmarks=det.landmarks, detection_score=float(det.score)))
        else:  # no model: the user still sees where the faces are
            faces = [Face(box=_int_box(d.box), label="", score=float(d.score), probabilities={},
                          landmarks=d.landmarks, detection_score=float(d.score)) for d in detections]
        if self.tracker is not None:
            faces = self.tracker.update(faces, image_bgr)  # the frame lets it re-identify people
        for face in faces:  # after tracking: a track's smoothed probabilities are what is shown
            face.uncertain = bool(face.probabilities) and is_uncertain(
                np.fromiter(face.probabilities.values(), np.float32), self.uncertain_below)
        end = time.perf_counter()
        timings = {
            "detect": (detected - start) * 1000.0,
            "align": (aligned - detected) * 1000.0,
            "classify": (classified - aligned) * 1000.0,
            "track": (end - classified) * 1000.0 if self.tracker is not None else 0.0,
            "total": (end - start) * 1000.0,
        }
        return FrameResult(faces=faces, timings=timings, time_s=time_s)

    def _crops(self, image_bgr: np.ndarray,
               detections: list[Detection]) -> tuple[list[Detection], list[np.ndarray]]:
        """(detections, crops); with ``align`` the detections come back with their landmarks."""
        if not detections:
            return [], []
        if not self.align:
            return detections, [crop_face(image_bgr, d.box) for d in detections]
        assert self.classifier is not None
        detections = list(detections)
        missing = [i for i, d in enumerate(detections) if d.landmarks is None]
        for i, det in zip(missing, find_landmarks(image_bgr, [detections[i] for i in missing])):
            detections[i] = det
        size = self.classifier.spec.input_size
        return detections, [align_face(image_bgr, d, size) for d in detections]


def check_uncertain_below(threshold: float) -> float:
    """The "uncertain" threshold, checked: a probability in [0, 1) (0 turns the state off)."""
    if not 0.0 <= float(threshold) < 1.0:
        raise ValueError(f"the uncertainty threshold must be at least 0 and below 1, got {threshold}")
    return float(threshold)


def _int_box(box: tuple[float, ...] | tuple[int, ...]) -> Box:
    x, y, w, h = (int(v) for v in box)
    return x, y, w, h


def build_pipeline(
    model_path: str | os.PathLike[str] | None,
    detector: str | FaceDetector = DEFAULT_DETECTOR,
    align: bool = False,
    tta: bool | str | None = False,
    trust: bool = False,
    labels: list[str] | tuple[str, ...] | None = None,
    normalization: str | None = None,
    *,
    min_face_size: int = 0,
    min_score: float = 0.0,
    track: bool = False,
    uncertain_below: float = DEFAULT_UNCERTAIN_BELOW,
) -> Pipeline:
    """Load a model (``None``: the bundled default) and a detector (a name or an instance) into a Pipeline.

    ``min_face_size``/``min_score`` set its :class:`FaceFilter`; ``uncertain_below`` the top probability
    under which a face is "uncertain"; ``tta`` is False/"none", True/"flip", "crops", or None for the model's
    own (the one its card's accuracy was measured with); ``track`` gives it a fresh
    :class:`FaceTracker` (for the frames of one video). Call it in the thread that will run the pipeline:
    the model is built and traced there. Raises ModelLoadError, DetectorError or ValueError (bad filter).
    """
    face_filter = FaceFilter(int(min_face_size), float(min_score))
    check_uncertain_below(uncertain_below)
    path = model_path if model_path is not None else default_model_path()
    if path is None:
        raise ModelLoadError("no model given and no default model is bundled; choose a model file "
                             "(.h5, .hdf5 or .keras), e.g. with --model FILE.")
    face_detector = create_detector(detector) if isinstance(detector, str) else detector
    if align and detector_available("landmarks"):
        raise DetectorError("alignment needs dlib and face_recognition (for the eye landmarks), which are "
                            "not installed; install them or turn alignment off.")
    loaded = load_model(path, trust=trust, labels=labels, normalization=normalization)
    return Pipeline(face_detector, EmotionClassifier(loaded, tta=OWN_TTA if tta is None else tta), align=align,
                    tracker=FaceTracker() if track else None, face_filter=face_filter,
                    uncertain_below=uncertain_below)
