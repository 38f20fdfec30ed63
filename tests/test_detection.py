"""Face detectors on the real photos, box geometry on scaled and huge images, landmarks and alignment."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.core.errors import DetectorError
from app.core.images import read_image
from app.core.recognition.detection import (
    DEFAULT_DETECTOR,
    DEFAULT_VIDEO_SIZE,
    VIDEO_OPTIONS,
    Detection,
    align_face,
    clip_box,
    create_detector,
    eye_angle,
    suppress_overlaps,
)

EXPECTED = {"two_people.jpg": 2, "justin.jpg": 1}


def _iou(a, b) -> float:  # type: ignore[no-untyped-def]
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def _needs_dlib() -> None:
    pytest.importorskip("face_recognition", reason="dlib / face_recognition not installed")


@pytest.fixture(scope="module")
def default_detector():  # type: ignore[no-untyped-def]
    return create_detector(DEFAULT_DETECTOR)


@pytest.mark.parametrize("name, count", sorted(EXPECTED.items()))
def test_default_detector_finds_every_face(default_detector, data_dir: Path, name: str, count: int) -> None:
    image = read_image(data_dir / name)
    found = default_detector.detect(image)
    assert len(found) == count
    h, w = image.shape[:2]
    for det in found:
        x, y, bw, bh = det.box
        assert all(isinstance(v, int) for v in det.box)
        assert 0 <= x and 0 <= y and x + bw <= w and y + bh <= h and bw > 40 and bh > 40
        assert 0.0 < det.score <= 1.0


def test_default_detector_on_12_angry_men(default_detector, data_dir: Path) -> None:
    found = default_detector.detect(read_image(data_dir / "12_angry_men.jpg"))
    assert len(found) >= 9
    # No two boxes for one face.
    assert all(_iou(a.box, b.box) < 0.3 for i, a in enumerate(found) for b in found[i + 1:])


def test_boxes_come_back_in_original_coordinates(default_detector, data_dir: Path) -> None:
    image = read_image(data_dir / "justin.jpg")
    (small,) = default_detector.detect(image)
    big = cv2.resize(image, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)  # 1524x1536: downscaled inside
    (large,) = default_detector.detect(big)
    expected = tuple(4 * v for v in small.box)
    assert _iou(large.box, expected) > 0.7


def test_face_in_huge_photo(default_detector, data_dir: Path) -> None:
    face = read_image(data_dir / "justin.jpg")
    canvas = np.full((8000, 12000, 3), 128, np.uint8)
    paste = cv2.resize(face, (3810, 3840), interpolation=cv2.INTER_CUBIC)
    canvas[2000:5840, 6000:9810] = paste
    found = default_detector.detect(canvas)
    assert len(found) == 1
    x, y, w, h = found[0].box
    assert 6000 <= x and x + w <= 9810 and 2000 <= y and y + h <= 5840 and w > 1000


def test_nothing_on_blank_tiny_and_grey_images(default_detector, data_dir: Path) -> None:
    assert default_detector.detect(np.zeros((480, 640, 3), np.uint8)) == []
    assert default_detector.detect(np.zeros((8, 8, 3), np.uint8)) == []
    assert default_detector.detect(np.zeros((0, 0, 3), np.uint8)) == []
    grey = cv2.cvtColor(read_image(data_dir / "justin.jpg"), cv2.COLOR_BGR2GRAY)
    assert len(default_detector.detect(grey)) == 1


FACES = sorted((Path(__file__).parent / "data" / "faces").iterdir())


@pytest.mark.parametrize("path", FACES, ids=[p.name for p in FACES])
def test_default_detector_finds_turned_cut_dark_and_rgba_faces(default_detector, path: Path) -> None:
    """Real faces as users try them (bench/detectors.py --write-fixtures): one face in each."""
    _needs_dlib()
    assert len(default_detector.detect(read_image(path))) == 1


@pytest.mark.parametrize("path", FACES, ids=[p.name for p in FACES])
def test_default_live_search_finds_them_in_640x480_frames(path: Path) -> None:
    """As the camera worker searches a frame by default (VIDEO_OPTIONS, the default video size)."""
    _needs_dlib()
    image = read_image(path)
    scale = min(640 / image.shape[1], 480 / image.shape[0])
    frame = np.zeros((480, 640, 3), np.uint8)
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    frame[:small.shape[0], :small.shape[1]] = small
    detector = create_detector(DEFAULT_DETECTOR, **VIDEO_OPTIONS[DEFAULT_DETECTOR])
    assert detector.max_side == DEFAULT_VIDEO_SIZE
    assert len(detector.detect(frame)) == 1


def test_create_detector_errors_and_options() -> None:
    with pytest.raises(DetectorError, match="unknown face detector 'yolo'"):
        create_detector("yolo")
    with pytest.raises(DetectorError, match="bad option"):
        create_detector("haar", no_such_option=1)
    detector = create_detector("HAAR", max_side=320)
    assert detector.name == "haar" and detector.max_side == 320


def test_clip_and_suppress() -> None:
    assert clip_box((-10.4, 5.6, 50, 1000), 100, 200) == (0, 6, 40, 194)
    outer = Detection((10, 10, 100, 100), 0.9)
    inner = Detection((30, 30, 50, 50), 0.5)
    other = Detection((300, 10, 80, 80), 0.7)
    assert [d.box for d in suppress_overlaps([inner, other, outer])] == [outer.box, other.box]


@pytest.mark.parametrize("name", ["hog", "cnn"])
def test_dlib_detectors(data_dir: Path, name: str) -> None:
    _needs_dlib()
    detector = create_detector(name)
    assert detector.name == name
    found = detector.detect(read_image(data_dir / "justin.jpg"))
    assert len(found) == 1
    if name == "hog":  # the CNN takes seconds per larger photo on a CPU; HOG covers the multi-face case
        assert len(detector.detect(read_image(data_dir / "two_people.jpg"))) == 2


def test_landmarks_for_a_haar_box(default_detector, data_dir: Path) -> None:
    _needs_dlib()
    from app.core.recognition.detection import find_landmarks

    image = read_image(data_dir / "two_people.jpg")
    detections = find_landmarks(image, default_detector.detect(image))
    assert len(detections) == 2
    for det in detections:
        points = det.landmarks
        assert points is not None and points.shape == (5, 2)
        x, _, w, _ = det.box
        assert np.all(points[:, 0] >= x - 0.1 * w) and np.all(points[:, 0] <= x + 1.1 * w)
        left_eye, right_eye, nose = points[0:2].mean(0), points[2:4].mean(0), points[4]
        assert left_eye[0] < right_eye[0]
        assert nose[1] > max(left_eye[1], right_eye[1])  # the nose is below the eyes


def test_align_levels_the_eyes_synthetic() -> None:
    # Two "eyes" on a line tilted by 30 degrees; after alignment they must sit on one row.
    image = np.zeros((400, 400, 3), np.uint8)
    centre = np.array([200.0, 200.0])
    angle = math.radians(30)
    offset = 60 * np.array([math.cos(angle), math.sin(angle)])
    eyes = [centre - offset, centre + offset]
    for eye in eyes:
        cv2.circle(image, (round(eye[0]), round(eye[1])), 8, (255, 255, 255), -1)
    landmarks = np.array([eyes[0], eyes[0], eyes[1], eyes[1], centre + [0, 50]], np.float32)
    det = Detection((100, 100, 200, 200), 1.0, landmarks)
    assert eye_angle(landmarks) == pytest.approx(30, abs=0.01)
    aligned = align_face(image, det, (100, 100))
    assert aligned.shape == (100, 100, 3)
    spots = _blobs(aligned)
    assert len(spots) == 2
    (x0, y0), (x1, y1) = spots
    assert abs(y0 - y1) < 1.5 and abs(x1 - x0) == pytest.approx(60, abs=3)
    # Without landmarks-driven rotation, the same crop keeps the tilt.
    unrotated = align_face(image, Detection((100, 100, 200, 200), 1.0,
                                            np.array([[0, 0]] * 4 + [[0, 1]], np.float32)), (100, 100))
    (_, uy0), (_, uy1) = _blobs(unrotated)
    assert abs(uy1 - uy0) > 20


def test_align_huge_face_and_out_of_image_box() -> None:
    image = np.full((4000, 4000, 3), 50, np.uint8)
    landmarks = np.array([[1500, 1900], [1600, 1900], [2400, 2100], [2500, 2100], [2000, 2400]], np.float32)
    det = Detection((0, 0, 3990, 3990), 1.0, landmarks)
    out = align_face(image, det, (48, 48))
    assert out.shape == (48, 48, 3) and int(out.mean()) == 50  # edge pixels repeated, no black corners


def test_align_real_face_with_landmarks(default_detector, data_dir: Path) -> None:
    _needs_dlib()
    from app.core.recognition.detection import find_landmarks

    image = read_image(data_dir / "justin.jpg")
    (det,) = default_detector.detect(image)
    x, y, w, h = det.box
    rotation = cv2.getRotationMatrix2D((x + w / 2, y + h / 2), -20, 1.0)  # tilt the head 20 degrees
    tilted = cv2.warpAffine(image, rotation, (image.shape[1], image.shape[0]), borderMode=cv2.BORDER_REPLICATE)
    (with_marks,) = find_landmarks(tilted, [det])
    assert abs(eye_angle(with_marks.landmarks)) > 12
    aligned = align_face(tilted, Detection(det.box, det.score), (160, 160))  # finds landmarks itself
    (again,) = find_landmarks(aligned, [Detection((0, 0, 160, 160))])
    assert abs(eye_angle(again.landmarks)) < 6


def _blobs(image: np.ndarray) -> list[tuple[float, float]]:
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    count, _, _, centroids = cv2.connectedComponentsWithStats((grey > 128).astype(np.uint8))
    return sorted((float(c[0]), float(c[1])) for c in centroids[1:count])
