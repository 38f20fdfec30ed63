"""Pipeline: real photos through the default detector and a tiny real model; timings; swapping parts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.core import model_io
from app.core.errors import ModelLoadError
from app.core.images import read_image
from app.core.labels import FER2013_LABELS
from app.core.recognition.detection import Detection, create_detector
from app.core.recognition.pipeline import (
    STAGES,
    Face,
    FaceFilter,
    FrameResult,
    Pipeline,
    build_pipeline,
)


@pytest.fixture(scope="module")
def pipeline(tiny_model_path: Path) -> Pipeline:
    return build_pipeline(tiny_model_path)


def test_two_people(pipeline: Pipeline, data_dir: Path) -> None:
    result = pipeline.process(read_image(data_dir / "two_people.jpg"))
    assert isinstance(result, FrameResult)
    assert len(result.faces) == 2
    for face in result.faces:
        assert isinstance(face, Face)
        assert list(face.probabilities) == list(FER2013_LABELS)
        assert sum(face.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
        assert face.label == max(face.probabilities, key=face.probabilities.get)
        assert face.score == pytest.approx(face.probabilities[face.label])
        assert face.track_id is None and face.landmarks is None
        assert len(face.box) == 4 and all(isinstance(v, int) for v in face.box)
    assert set(result.timings) == set(STAGES) == {"detect", "align", "classify", "track", "total"}
    assert all(v >= 0 for v in result.timings.values()) and result.timings["track"] == 0.0
    assert result.timings["total"] >= result.timings["detect"] + result.timings["classify"] - 1e-6


def test_probabilities_are_the_classifiers(pipeline: Pipeline, data_dir: Path) -> None:
    image = read_image(data_dir / "justin.jpg")
    (face,) = pipeline.process(image).faces
    x, y, w, h = face.box
    direct = pipeline.classifier.predict([image[y:y + h, x:x + w]])[0]
    np.testing.assert_allclose(list(face.probabilities.values()), direct, atol=1e-6)


def test_no_faces(pipeline: Pipeline) -> None:
    result = pipeline.process(np.zeros((480, 640, 3), np.uint8))
    assert result.faces == [] and set(result.timings) == set(STAGES)


class _FixedDetector:
    """A detector stub with a known box, to test that the pipeline uses whatever detector it holds."""

    name = "fixed"

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        return [Detection((10, 20, 30, 40), 0.5)]


def test_detector_and_classifier_can_be_swapped(pipeline: Pipeline, tiny_model_path: Path) -> None:
    swapped = build_pipeline(tiny_model_path, detector=_FixedDetector())
    (face,) = swapped.process(np.zeros((100, 100, 3), np.uint8)).faces
    assert face.box == (10, 20, 30, 40)
    swapped.detector = create_detector("haar")
    assert swapped.process(np.zeros((100, 100, 3), np.uint8)).faces == []


def test_labels_and_normalisation_override(tiny_model_path: Path, data_dir: Path) -> None:
    labels = ["a", "b", "c", "d", "e", "f", "g"]
    custom = build_pipeline(tiny_model_path, labels=labels, normalization="zero_1")
    assert custom.labels == tuple(labels)
    assert custom.classifier.spec.normalization == "zero_1"
    (face,) = custom.process(read_image(data_dir / "justin.jpg")).faces
    assert list(face.probabilities) == labels
    with pytest.raises(ModelLoadError, match="3 labels given"):
        build_pipeline(tiny_model_path, labels=["a", "b", "c"])


def test_no_model_and_no_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_io, "default_model_path", lambda: None)
    import app.core.recognition.pipeline as pipeline_module

    monkeypatch.setattr(pipeline_module, "default_model_path", lambda: None)
    with pytest.raises(ModelLoadError, match="no model given"):
        build_pipeline(None)


def test_align_adds_landmarks(tiny_model_path: Path, data_dir: Path) -> None:
    pytest.importorskip("face_recognition", reason="dlib / face_recognition not installed")
    aligned = build_pipeline(tiny_model_path, align=True, tta=True)
    result = aligned.process(read_image(data_dir / "two_people.jpg"))
    assert len(result.faces) == 2
    for face in result.faces:
        assert face.landmarks is not None and face.landmarks.shape == (5, 2)
    assert result.timings["align"] > 0


def test_annotate_draws_on_a_copy(pipeline: Pipeline, data_dir: Path) -> None:
    from app.core.labels import colour_for
    from app.core.recognition.annotate import draw_faces

    image = read_image(data_dir / "two_people.jpg")
    original = image.copy()
    faces = pipeline.process(image).faces
    drawn = draw_faces(image, faces)
    assert np.array_equal(image, original)  # the input is untouched
    assert drawn.shape == image.shape and not np.array_equal(drawn, image)
    x, y, _, h = faces[0].box
    faces[0].uncertain = False
    r, g, b = colour_for(faces[0].label)
    assert draw_faces(image, faces)[y + h // 2, x].tolist() == [b, g, r]  # the box's edge in the label's colour
    assert np.array_equal(draw_faces(image, []), image)


def test_a_face_below_the_threshold_is_uncertain_and_keeps_its_probabilities(pipeline: Pipeline,
                                                                              data_dir: Path) -> None:
    from app.core.recognition.annotate import UNCERTAIN_BGR, caption, draw_faces
    from app.core.recognition.pipeline import check_uncertain_below

    image = read_image(data_dir / "two_people.jpg")
    pipeline.uncertain_below = 0.0
    faces = pipeline.process(image).faces
    assert faces and not any(face.uncertain for face in faces)
    pipeline.uncertain_below = 0.999999
    faces = pipeline.process(image).faces
    assert all(face.uncertain for face in faces)
    assert all(len(face.probabilities) == len(pipeline.labels) and face.label for face in faces)
    assert caption(faces[0]).startswith(f"uncertain ({faces[0].label} ")
    x, y, _, h = faces[0].box
    assert draw_faces(image, faces)[y + h // 2, x].tolist() == list(UNCERTAIN_BGR)
    for bad in (-0.1, 1.0, 2):
        with pytest.raises(ValueError, match="uncertainty threshold"):
            check_uncertain_below(bad)


def test_missing_dlib_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tiny_model_path: Path) -> None:
    from app.core.errors import DetectorError
    from app.core.recognition import detection

    def missing():  # type: ignore[no-untyped-def]
        raise DetectorError("this detector needs dlib and face_recognition, which are not installed")

    monkeypatch.setattr(detection, "_face_recognition", missing)
    monkeypatch.setattr(detection, "_missing_libraries", lambda: ["dlib"])
    with pytest.raises(DetectorError, match="alignment needs dlib"):
        build_pipeline(tiny_model_path, detector="haar", align=True)
    with pytest.raises(DetectorError, match="needs dlib"):  # the default detector (HOG) needs it too
        build_pipeline(tiny_model_path)
    with pytest.raises(DetectorError, match="needs dlib"):
        build_pipeline(tiny_model_path, detector="hog")
    assert detection.detector_available("cnn") is not None and detection.detector_available("haar") is None


def test_face_filter_drops_small_and_unsure_faces(pipeline: Pipeline) -> None:
    class Three:
        name = "three"

        def detect(self, image_bgr: np.ndarray) -> list[Detection]:
            return [Detection((0, 0, 20, 30), 0.9), Detection((40, 0, 50, 50), 0.3),
                    Detection((100, 0, 60, 60), 0.8)]

    image = np.zeros((200, 200, 3), np.uint8)
    swapped = Pipeline(Three(), pipeline.classifier)
    assert len(swapped.process(image).faces) == 3
    swapped.face_filter = FaceFilter(min_size=30)
    assert [f.box[0] for f in swapped.process(image).faces] == [40, 100]
    swapped.face_filter = FaceFilter(min_size=30, min_score=0.5)
    (face,) = swapped.process(image).faces
    assert face.box == (100, 0, 60, 60) and face.detection_score == pytest.approx(0.8)
    with pytest.raises(ValueError, match="between 0 and 1"):
        FaceFilter(min_score=1.5)
    with pytest.raises(ValueError, match="0 or more"):
        build_pipeline(None, min_face_size=-1)


def test_tracked_video_frames_keep_one_id(tiny_model_path: Path, data_dir: Path) -> None:
    """The one path for video: the same face over frames keeps its track id; the timings include tracking."""
    import cv2

    video = build_pipeline(tiny_model_path, detector="haar", track=True)
    capture = cv2.VideoCapture(str(data_dir / "woman2_clip.mp4"))
    ids, times = [], []
    for index in range(6):
        ok, frame = capture.read()
        assert ok
        result = video.process(frame, time_s=index / 25)
        times.append(result.time_s)
        ids.extend(f.track_id for f in result.faces)
    capture.release()
    assert times == [i / 25 for i in range(6)]
    assert ids and set(ids) == {1}
    assert result.timings["track"] >= 0 and result.timings["total"] >= result.timings["detect"]


def test_no_model_boxes_faces_without_labels(data_dir: Path) -> None:
    detect_only = Pipeline(create_detector("haar"), None)
    assert detect_only.labels == ()
    faces = detect_only.process(read_image(data_dir / "two_people.jpg")).faces
    assert len(faces) == 2 and all(f.label == "" and f.probabilities == {} for f in faces)
    assert all(0 < f.score <= 1 and f.score == f.detection_score for f in faces)
