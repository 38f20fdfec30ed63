"""Person re-identification in the tracker: numbers survive gaps and cuts, are never shared or reused.

The logic is tested with a stand-in encoder that reads who a face is from the frame's pixels (so each
rule can be checked exactly); the last tests use face_recognition's real encodings of real photos.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import pytest

from app.core.recognition.identity import (
    KEEP_TOLERANCE,
    MATCH_TOLERANCE,
    PersonRegistry,
    reid_available,
)
from app.core.recognition.tracking import FaceTracker


@dataclass
class FakeFace:
    box: tuple[int, int, int, int]
    label: str = ""
    score: float = 0.0
    probabilities: dict[str, float] = field(default_factory=dict)
    landmarks: object = None
    track_id: int | None = None


class PixelEncoder:
    """Encodes a box as a one-hot vector of the person code written at the box's top-left pixel."""

    def __init__(self) -> None:
        self.calls = 0

    def encode(self, image, boxes):
        self.calls += len(boxes)
        return [np.eye(128, dtype=np.float32)[int(image[y, x, 0])] for x, y, _, _ in boxes]


def frame(people: dict[int, tuple[int, int, int, int]], background: int = 100) -> tuple[np.ndarray, list]:
    """A grey frame with a person code written into each face box; and the faces."""
    image = np.full((240, 320, 3), background, np.uint8)
    for code, (x, y, _w, _h) in people.items():
        image[y, x, 0] = code
    return image, [FakeFace(box) for box in people.values()]


def ids(tracker: FaceTracker, people: dict[int, tuple[int, int, int, int]], background: int = 100) -> list[int]:
    image, faces = frame(people, background)
    return [f.track_id for f in tracker.update(faces, image)]


def test_a_face_that_leaves_keeps_its_number_when_it_comes_back():
    tracker = FaceTracker(max_missed=2, encoder=PixelEncoder())
    assert ids(tracker, {7: (10, 10, 40, 40), 9: (200, 10, 40, 40)}) == [1, 2]
    for _ in range(5):  # both gone long enough for their tracks to expire
        ids(tracker, {})
    assert tracker.tracks == []
    # They come back elsewhere, in the other order: same people, same numbers.
    assert ids(tracker, {9: (20, 100, 40, 40), 7: (250, 150, 40, 40)}) == [2, 1]
    # A new person gets a new number; old numbers are not reused.
    assert ids(tracker, {9: (20, 100, 40, 40), 7: (250, 150, 40, 40), 5: (120, 60, 40, 40)}) == [2, 1, 3]


def test_encodings_only_when_a_track_starts_or_is_in_doubt():
    encoder = PixelEncoder()
    tracker = FaceTracker(encoder=encoder)
    for i in range(50):  # a steady face, moving slowly: encoded once, when its track starts
        assert ids(tracker, {7: (10 + i, 10, 40, 40)}) == [1]
    assert encoder.calls == 1
    for _ in range(4):  # a gap of four frames puts the track in doubt when it is matched again
        ids(tracker, {})
    assert ids(tracker, {7: (60, 10, 40, 40)}) == [1]
    assert encoder.calls == 2


def test_a_different_person_after_a_cut_gets_a_new_number_even_in_the_same_place():
    tracker = FaceTracker(encoder=PixelEncoder())
    assert ids(tracker, {7: (10, 10, 40, 40)}, background=40) == [1]
    assert ids(tracker, {7: (10, 10, 40, 40)}, background=40) == [1]
    # A cut (the whole picture changes) to someone else whose box overlaps the old one completely.
    assert ids(tracker, {8: (10, 10, 40, 40)}, background=200) == [2]
    assert tracker.cuts == 1
    # Cut back: the first person is recognised again.
    assert ids(tracker, {7: (12, 10, 40, 40)}, background=40) == [1]


def test_two_faces_never_share_a_number_even_when_they_look_alike():
    tracker = FaceTracker(encoder=PixelEncoder())
    assert ids(tracker, {7: (10, 10, 40, 40)}) == [1]
    image, faces = frame({7: (10, 10, 40, 40)})
    image[10, 200, 0] = 7  # a twin: same encoding, another place
    faces.append(FakeFace((200, 10, 40, 40)))
    numbers = [f.track_id for f in tracker.update(faces, image)]
    assert numbers[0] == 1 and numbers[1] not in (None, 1)


def test_crossing_faces_are_checked_and_keep_their_own_numbers():
    tracker = FaceTracker(iou_threshold=0.1, encoder=PixelEncoder())
    assert ids(tracker, {7: (100, 10, 40, 40), 8: (150, 10, 40, 40)}) == [1, 2]
    # They swap places in one step while overlapping: IoU alone would swap their numbers.
    image = np.full((240, 320, 3), 100, np.uint8)
    image[10, 112, 0] = 8
    image[10, 138, 0] = 7
    faces = [FakeFace((112, 10, 40, 40)), FakeFace((138, 10, 40, 40))]
    assert [f.track_id for f in tracker.update(faces, image)] == [2, 1]


def test_without_the_frame_tracks_get_new_numbers_after_a_gap():
    tracker = FaceTracker(max_missed=1, encoder=PixelEncoder())
    _, faces = frame({7: (10, 10, 40, 40)})
    assert tracker.update(faces)[0].track_id == 1
    tracker.update([])
    tracker.update([])
    assert tracker.update(faces)[0].track_id == 2
    assert tracker.encodings == 0


def test_registry_keeps_a_bounded_gallery():
    registry = PersonRegistry(gallery_size=3)
    number = registry.new_number()
    rng = np.random.default_rng(0)
    for _ in range(10):
        registry.add(number, rng.normal(size=128).astype(np.float32))
    assert len(registry._people[number].gallery) == 3
    assert registry.new_number() == number + 1


# ------------------------------------------------------------------------------------------- real faces

needs_dlib = pytest.mark.skipif(not reid_available(), reason="face_recognition / dlib not installed")


@needs_dlib
def test_real_encodings_tell_the_people_of_the_test_photos_apart(data_dir):
    from app.core.recognition.detection import create_detector
    from app.core.recognition.identity import FaceEncoder

    encoder = FaceEncoder()
    detector = create_detector("haar")
    people = []
    for name in ("two_people.jpg", "justin.jpg"):
        image = cv2.imread(str(data_dir / name))
        boxes = [d.box for d in detector.detect(image)]
        people += encoder.encode(image, boxes)
        # The same faces, smaller (another shot of the same photo): still the same people.
        small = cv2.resize(image, None, fx=0.6, fy=0.6, interpolation=cv2.INTER_AREA)
        again = encoder.encode(small, [tuple(int(v * 0.6) for v in b) for b in boxes])
        for a, b in zip(people[-len(boxes):], again):
            assert np.linalg.norm(a - b) < KEEP_TOLERANCE
    assert len(people) == 3
    for i in range(3):
        for j in range(i + 1, 3):
            assert np.linalg.norm(people[i] - people[j]) > MATCH_TOLERANCE


@needs_dlib
def test_the_live_windows_tracks_are_people_too(data_dir):
    """The camera worker's Recognizer (detection only, no model needed) re-identifies across cuts."""
    from app.core.recognition.recognizer import Recognizer
    from tests.data.make_people_clip import shot_table

    recognizer = Recognizer("haar", video_size=480)
    cap = cv2.VideoCapture(str(data_dir / "people_clip.mp4"))
    seen: dict[int, set[int]] = {}
    index = 0
    while True:
        ok, image = cap.read()
        if not ok:
            break
        numbers = [f.track_id for f in recognizer.process_frame(image).faces]
        assert len(numbers) == len(set(numbers))
        seen[index] = set(numbers)
        index += 1
    cap.release()
    shots = [set().union(*(seen[f] for f in range(s["first_frame"], s["last_frame"] + 1))) for s in shot_table()]
    two_a, justin_a, two_b, _group, justin_b = shots
    assert len(two_a) == 2 and two_b == two_a and len(justin_a) == 1 and justin_b == justin_a
    assert not two_a & justin_a
