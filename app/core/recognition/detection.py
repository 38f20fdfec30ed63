"""Face detectors behind one interface (OpenCV Haar, dlib HOG, dlib CNN), 5-point landmarks, alignment.

Every detector works on a downscaled copy of large images (``max_side``) and returns boxes in the
original image's pixel coordinates, clipped to the image. Landmarks come from dlib's 5-point shape
predictor (through face_recognition) for a box from any detector; they are computed only on request
(``find_landmarks``, or ``align_face`` on a detection without them), since most frames do not need them.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import cv2
import numpy as np

from app.core.errors import DetectorError

logger = logging.getLogger(__name__)

Box = tuple[int, int, int, int]  # x, y, width, height

DETECTORS: tuple[str, ...] = ("haar", "hog", "cnn")

#: Chosen by measurement (bench/detectors.py, 2 shared CPU cores): on 175 real faces (the five photos of the
#: project's shared test media, portraits cut from them, turned 20 degrees, cut at the edge, RGBA, dark, and
#: FER2013 expressions) dlib's HOG found 78 % as photos against Haar's 65 % (turned 82 vs 42 %, cut at the edge 50
#: vs 0 %), and 70-71 % against 62-67 % with each image fitted into a 640x480 frame searched at the live
#: sizes, at less time per video frame (15 / 32 ms at 320 / 480 px against 20 / 44 ms). Haar is better
#: only on faces too small for HOG's 80-pixel window (a group far away in a live frame): pick it, or a
#: larger video size, for those. dlib's CNN takes seconds per photo without a GPU.
DEFAULT_DETECTOR = "hog"

#: Long side, in pixels, of the copy of each live frame that is searched for faces (the window's "Video
#: detection" box; photos use each detector's own size). HOG at 480 finds faces from about 107 pixels of a
#: 640x480 frame (a face at arm's length from a webcam) in ~30 ms; 320 is twice as fast but needs 160.
DEFAULT_VIDEO_SIZE = 480
VIDEO_SIZES: tuple[int, ...] = (320, 480, 640, 0)

#: Options for live video, per detector: ``create_detector(name, **VIDEO_OPTIONS.get(name, {}))`` searches
#: a frame as the camera worker does by default.
VIDEO_OPTIONS: dict[str, dict[str, Any]] = {name: {"max_side": DEFAULT_VIDEO_SIZE} for name in ("haar", "hog", "cnn")}

_HAAR_CASCADE = "haarcascade_frontalface_default.xml"


@dataclass
class Detection:
    """One face found in an image: a box in original image coordinates, a 0..1 confidence, landmarks.

    ``landmarks`` is a (5, 2) float32 array of (x, y) points or None: rows 0-1 are the corners of the
    eye on the image's left, rows 2-3 those of the eye on the image's right, row 4 the base of the nose.
    ``score`` is the detector's own confidence squashed to 0..1: comparable within one detector only.
    """

    box: Box
    score: float = 1.0
    landmarks: np.ndarray | None = None


class FaceDetector(Protocol):
    """What every detector offers: a name and ``detect(image_bgr) -> [Detection]``."""

    name: str

    def detect(self, image_bgr: np.ndarray) -> list[Detection]: ...


# ---------------------------------------------------------------------------------------------- detectors


class _ScaledDetector:
    """Shared logic: downscale so the longer side is at most ``max_side``, detect, scale boxes back, clip."""

    name = "base"

    def __init__(self, max_side: int = 640, overlap: float = 0.3) -> None:
        if max_side < 32:
            raise ValueError(f"max_side must be at least 32 pixels, got {max_side}")
        self.max_side = int(max_side)
        self.overlap = float(overlap)

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        if image_bgr is None or image_bgr.ndim not in (2, 3) or image_bgr.size == 0:
            return []
        height, width = image_bgr.shape[:2]
        scale = min(1.0, self.max_side / max(height, width))
        raw = self._detect(self._prepare(image_bgr, scale))
        detections = []
        for x, y, w, h, score in raw:
            box = clip_box((x / scale, y / scale, w / scale, h / scale), width, height)
            if box[2] > 1 and box[3] > 1:
                detections.append(Detection(box=box, score=float(score)))
        return suppress_overlaps(detections, self.overlap)

    def _prepare(self, image_bgr: np.ndarray, scale: float) -> np.ndarray:
        raise NotImplementedError

    def _detect(self, work: np.ndarray) -> list[tuple[float, float, float, float, float]]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} max_side={self.max_side}>"


def _grey(image_bgr: np.ndarray, scale: float) -> np.ndarray:
    # Convert first, then shrink: the resize of one channel is a third of the work.
    grey = image_bgr if image_bgr.ndim == 2 else cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
    if scale < 1.0:
        size = (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    return grey


def _rgb(image_bgr: np.ndarray, scale: float) -> np.ndarray:
    small = image_bgr
    if scale < 1.0:
        size = (max(1, round(image_bgr.shape[1] * scale)), max(1, round(image_bgr.shape[0] * scale)))
        small = cv2.resize(image_bgr, size, interpolation=cv2.INTER_AREA)
    code = cv2.COLOR_GRAY2RGB if small.ndim == 2 else cv2.COLOR_BGR2RGB
    return np.ascontiguousarray(cv2.cvtColor(small, code))


class HaarDetector(_ScaledDetector):
    """OpenCV's Haar cascade (frontal faces): finds small faces, but misses turned and cut-off ones.

    The defaults were tuned on the reference photos and video (bench/detectors.py): the whole image is
    searched at 480 pixels on its longer side for faces of 24 pixels and up (a 640x480 frame: faces from
    32 pixels), in steps of 20 %, keeping windows with 5 or more neighbours. Finer settings (scale factor
    1.1, larger max_side) cost two to three times as much per frame for no more faces on those photos.
    """

    name = "haar"

    def __init__(self, max_side: int = 480, min_size: int = 24, scale_factor: float = 1.2,
                 min_neighbors: int = 5, equalize: bool = False, cascade: str = _HAAR_CASCADE,
                 overlap: float = 0.3) -> None:
        super().__init__(max_side, overlap)
        path = cascade if "/" in cascade or "\\" in cascade else str(cv2.data.haarcascades) + "/" + cascade
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise DetectorError(f"cannot load the Haar cascade {path}; reinstall opencv-python.")
        self.min_size = max(20, int(min_size))  # the cascade's own window is 20x20
        self.scale_factor = float(scale_factor)
        self.min_neighbors = int(min_neighbors)
        self.equalize = equalize

    def _prepare(self, image_bgr: np.ndarray, scale: float) -> np.ndarray:
        grey = _grey(image_bgr, scale)
        # Off by default: on the reference video, equalisation turned plain walls into false faces.
        return cv2.equalizeHist(grey) if self.equalize else grey

    def _detect(self, work: np.ndarray) -> list[tuple[float, float, float, float, float]]:
        if min(work.shape[:2]) < self.min_size:
            return []
        boxes, neighbours = self._cascade.detectMultiScale2(
            work, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
            minSize=(self.min_size, self.min_size))
        # More merged neighbour windows means a surer face; squash the count to 0..1.
        return [(x, y, w, h, 1.0 - math.exp(-n / 10.0)) for (x, y, w, h), n in zip(boxes, neighbours)]


def _face_recognition() -> Any:
    try:
        with warnings.catch_warnings():
            # face_recognition_models imports pkg_resources (hence setuptools<81), which warns on import.
            warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
            import face_recognition  # noqa: F401 - imported for its loaded dlib models
            from face_recognition import api
    except ImportError as exc:
        raise DetectorError(
            f"this detector needs dlib and face_recognition, which are not installed ({exc}). "
            "Install them (pip install dlib face_recognition) or use the 'haar' detector.") from exc
    return api


class HogDetector(_ScaledDetector):
    """dlib's HOG + linear SVM detector, the default: finds turned and cut-off faces, few false ones.

    Its window is 80 pixels, so small faces need resolution: photos are searched at up to 1600 pixels
    on the longer side (``upsample=1`` doubles the resolution again, at four times the cost).
    """

    name = "hog"

    def __init__(self, max_side: int = 1600, upsample: int = 0, threshold: float = 0.0,
                 overlap: float = 0.3) -> None:
        super().__init__(max_side, overlap)
        self._api = _face_recognition()
        import dlib

        # Its own dlib detector, not face_recognition's shared one: dlib's detectors are not safe to call
        # from two threads at once, and whole-video analysis detects on two threads (one detector each).
        self._dlib_detector = dlib.get_frontal_face_detector()
        self.upsample = int(upsample)
        self.threshold = float(threshold)

    def _prepare(self, image_bgr: np.ndarray, scale: float) -> np.ndarray:
        return _rgb(image_bgr, scale)

    def _detect(self, work: np.ndarray) -> list[tuple[float, float, float, float, float]]:
        rects, scores, _ = self._dlib_detector.run(work, self.upsample, self.threshold)
        return [(r.left(), r.top(), r.width(), r.height(), _sigmoid(s)) for r, s in zip(rects, scores)]


class CnnDetector(_ScaledDetector):
    """dlib's CNN (MMOD) detector: robust to pose and lighting, but seconds per photo on a CPU.

    Meant for photos (and for video only with a CUDA build of dlib); searched at up to 1280 pixels.
    """

    name = "cnn"

    def __init__(self, max_side: int = 1280, upsample: int = 0, overlap: float = 0.3) -> None:
        super().__init__(max_side, overlap)
        self._api = _face_recognition()
        self.upsample = int(upsample)

    def _prepare(self, image_bgr: np.ndarray, scale: float) -> np.ndarray:
        return _rgb(image_bgr, scale)

    def _detect(self, work: np.ndarray) -> list[tuple[float, float, float, float, float]]:
        found = self._api.cnn_face_detector(work, self.upsample)
        return [(d.rect.left(), d.rect.top(), d.rect.width(), d.rect.height(), _sigmoid(d.confidence))
                for d in found]


def _sigmoid(value: float) -> float:
    return 1.0 / (1.0 + math.exp(-2.0 * float(value)))


_FACTORIES: dict[str, Callable[..., FaceDetector]] = {
    "haar": HaarDetector,
    "hog": HogDetector,
    "cnn": CnnDetector,
}


def create_detector(name: str = DEFAULT_DETECTOR, **options: Any) -> FaceDetector:
    """Build a detector by name ("haar", "hog" or "cnn"); options go to its constructor (max_side, ...).

    Raises DetectorError for an unknown name or a detector whose libraries are not installed.
    """
    key = (name or DEFAULT_DETECTOR).strip().lower()
    factory = _FACTORIES.get(key)
    if factory is None:
        raise DetectorError(f"unknown face detector {name!r}; choose one of {', '.join(DETECTORS)}.")
    try:
        return factory(**options)
    except TypeError as exc:
        raise DetectorError(f"bad option for the {key} detector: {exc}") from exc


def _missing_libraries() -> list[str]:
    """The libraries the dlib detectors need that are not installed (looked up, not imported)."""
    return [module for module in ("dlib", "face_recognition", "face_recognition_models")
            if importlib.util.find_spec(module) is None]


def detector_available(name: str) -> str | None:
    """None when the detector can run here, else a sentence saying why not (for greying out a menu).

    ``"landmarks"`` asks about the 5-point landmarks that alignment needs. Only looks for the libraries
    (importlib.util.find_spec), never imports them: importing dlib and loading its models takes seconds,
    which the GUI thread must not spend at start-up; the worker imports them when it first detects.
    """
    if name == "haar":
        return None
    if name == "landmarks":
        name = "hog"  # same libraries
    if name not in _FACTORIES:
        return f"unknown detector {name!r}"
    missing = _missing_libraries()
    if missing:
        return (f"this detector needs dlib and face_recognition, which are not installed (missing: "
                f"{', '.join(missing)}). Install them (pip install dlib face_recognition) or use the "
                "'haar' detector.")
    return None


# ---------------------------------------------------------------------------------------------- geometry


def clip_box(box: Sequence[float], width: int, height: int) -> Box:
    """Round a float (x, y, w, h) box to ints and clip it to a ``width`` x ``height`` image."""
    x0 = round(max(0.0, min(float(box[0]), width)))
    y0 = round(max(0.0, min(float(box[1]), height)))
    x1 = round(max(0.0, min(float(box[0]) + float(box[2]), width)))
    y1 = round(max(0.0, min(float(box[1]) + float(box[3]), height)))
    return x0, y0, max(0, x1 - x0), max(0, y1 - y0)


def _overlap(a: Box, b: Box) -> float:
    """Intersection over the smaller box's area: catches a box nested inside another as well as IoU."""
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    smaller = min(a[2] * a[3], b[2] * b[3])
    return (ix * iy) / smaller if smaller > 0 else 0.0


def suppress_overlaps(detections: list[Detection], threshold: float = 0.3) -> list[Detection]:
    """Keep the surest of boxes that overlap by more than ``threshold``; result sorted left to right."""
    ordered = sorted(detections, key=lambda d: (d.score, d.box[2] * d.box[3]), reverse=True)
    kept: list[Detection] = []
    for det in ordered:
        if all(_overlap(det.box, k.box) <= threshold for k in kept):
            kept.append(det)
    return sorted(kept, key=lambda d: (d.box[0], d.box[1]))


def crop_face(image_bgr: np.ndarray, box: Box) -> np.ndarray:
    """The pixels inside ``box`` (a view, not a copy)."""
    x, y, w, h = box
    return image_bgr[y:y + h, x:x + w]


# ---------------------------------------------------------------------------------------------- landmarks


def find_landmarks(image_bgr: np.ndarray, detections: Sequence[Detection]) -> list[Detection]:
    """Copies of ``detections`` with 5-point landmarks (dlib's predictor, via face_recognition).

    Works for boxes from any detector. Each face is cut out with a margin first, so a 12000x8000 photo
    is never converted whole. Raises DetectorError when face_recognition is not installed.
    """
    if not detections:
        return []
    _face_recognition()  # a clear DetectorError when dlib is missing
    import face_recognition
    height, width = image_bgr.shape[:2]
    result = []
    for det in detections:
        x, y, w, h = det.box
        pad = int(0.25 * max(w, h)) + 2
        x0, y0 = max(0, x - pad), max(0, y - pad)
        x1, y1 = min(width, x + w + pad), min(height, y + h + pad)
        patch = _rgb(image_bgr[y0:y1, x0:x1], 1.0)
        location = (y - y0, x - x0 + w, y - y0 + h, x - x0)  # (top, right, bottom, left)
        marks = face_recognition.face_landmarks(patch, [location], model="small")
        points = None
        if marks:
            left_eye = np.asarray(marks[0]["left_eye"], np.float32)
            right_eye = np.asarray(marks[0]["right_eye"], np.float32)
            nose = np.asarray(marks[0]["nose_tip"], np.float32)[:1]
            eyes = sorted((left_eye, right_eye), key=lambda e: float(e[:, 0].mean()))  # image left first
            points = np.concatenate([eyes[0][np.argsort(eyes[0][:, 0])], eyes[1][np.argsort(eyes[1][:, 0])],
                                     nose]) + np.array([x0, y0], np.float32)
        result.append(replace(det, landmarks=points))
    return result


def eye_angle(landmarks: np.ndarray) -> float:
    """Degrees the line from the image-left eye to the image-right eye rises clockwise (y points down)."""
    left = landmarks[0:2].mean(axis=0)
    right = landmarks[2:4].mean(axis=0)
    return math.degrees(math.atan2(float(right[1] - left[1]), float(right[0] - left[0])))


def align_face(image_bgr: np.ndarray, detection: Detection, size: tuple[int, int] | int,
               margin: float = 0.0) -> np.ndarray:
    """The face of ``detection`` rotated so the eyes are level, cropped to its box and resized.

    ``size`` is (height, width) or one side; ``margin`` widens the box by that fraction on each side.
    Uses the detection's landmarks, finding them first when it has none; a face whose landmarks cannot
    be found is cropped without rotation. Pixels beyond the image edge repeat the edge.
    """
    out_h, out_w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    landmarks = detection.landmarks
    if landmarks is None:
        landmarks = find_landmarks(image_bgr, [detection])[0].landmarks
    angle = eye_angle(landmarks) if landmarks is not None else 0.0
    x, y, w, h = detection.box
    bw, bh = w * (1 + 2 * margin), h * (1 + 2 * margin)
    cx, cy = x + w / 2.0, y + h / 2.0
    source = image_bgr
    shrink = min(out_w / max(bw, 1.0), out_h / max(bh, 1.0))
    if shrink < 0.5:
        # Shrink the face's neighbourhood with area averaging first: warpAffine samples like a linear
        # resize, which aliases badly when a 2000-pixel face becomes a 48-pixel crop.
        radius = 0.5 * math.hypot(bw, bh) + 2
        x0, y0 = int(max(0, cx - radius)), int(max(0, cy - radius))
        x1 = int(min(image_bgr.shape[1], cx + radius + 1))
        y1 = int(min(image_bgr.shape[0], cy + radius + 1))
        factor = shrink * 2  # keep twice the output resolution for the final (linear) sampling
        region = image_bgr[y0:y1, x0:x1]
        size_small = (max(1, round(region.shape[1] * factor)), max(1, round(region.shape[0] * factor)))
        source = cv2.resize(region, size_small, interpolation=cv2.INTER_AREA)
        fx, fy = size_small[0] / region.shape[1], size_small[1] / region.shape[0]
        cx, cy, bw, bh = (cx - x0) * fx, (cy - y0) * fy, bw * fx, bh * fy
    # Rotate about the box centre by the eye angle, move the centre to the output's, scale box -> output.
    rotation = cv2.getRotationMatrix2D((cx, cy), angle, 1.0)
    matrix = np.vstack([rotation, [0.0, 0.0, 1.0]])
    to_output = np.array([[out_w / bw, 0.0, out_w / 2.0 - cx * out_w / bw],
                          [0.0, out_h / bh, out_h / 2.0 - cy * out_h / bh],
                          [0.0, 0.0, 1.0]])
    affine = (to_output @ matrix)[:2]
    return cv2.warpAffine(source, affine, (out_w, out_h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
