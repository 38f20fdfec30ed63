"""Tracking: stable ids across frames, IoU matching, smoothing, expiry, label-set changes."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from app.core.recognition.tracking import FaceTracker, iou

LABELS = ("angry", "happy", "neutral")


@dataclass
class FakeFace:
    """Same fields as app.core.recognition.pipeline.Face; the tracker only relies on these."""

    box: tuple[int, int, int, int]
    label: str = ""
    score: float = 0.0
    probabilities: dict[str, float] = field(default_factory=dict)
    landmarks: object = None
    track_id: int | None = None


def face(box, probs=None):
    probs = dict(zip(LABELS, probs)) if probs is not None else {}
    label = max(probs, key=probs.get) if probs else ""
    return FakeFace(box=box, label=label, score=probs.get(label, 0.0), probabilities=probs)


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == pytest.approx(1.0)
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    assert iou((0, 0, 0, 10), (0, 0, 10, 10)) == 0.0


def test_ids_stable_across_moving_faces_and_order_swaps():
    tracker = FaceTracker()
    a, b = (10, 10, 50, 50), (200, 10, 50, 50)
    first = tracker.update([face(a), face(b)])
    assert [f.track_id for f in first] == [1, 2]
    # Faces move a little and come in the other order: ids follow the faces, not the list positions.
    second = tracker.update([face((205, 12, 50, 50)), face((14, 11, 50, 50))])
    assert [f.track_id for f in second] == [2, 1]


def test_new_face_gets_new_id_and_ids_are_not_reused():
    tracker = FaceTracker(max_missed=1)
    tracker.update([face((0, 0, 40, 40))])
    tracker.update([])
    tracker.update([])  # missed twice > max_missed=1: expired
    assert tracker.tracks == []
    again = tracker.update([face((0, 0, 40, 40))])
    assert again[0].track_id == 2


def test_track_survives_short_gaps():
    tracker = FaceTracker(max_missed=3)
    tracker.update([face((0, 0, 40, 40))])
    for _ in range(3):
        tracker.update([])
    assert tracker.update([face((2, 2, 40, 40))])[0].track_id == 1


def test_smoothing_stops_flicker_and_label_is_argmax_of_smoothed():
    tracker = FaceTracker(alpha=0.3)
    box = (0, 0, 60, 60)
    out = tracker.update([face(box, [0.1, 0.8, 0.1])])[0]
    assert out.label == "happy"
    # One noisy frame saying "angry" does not flip the label...
    out = tracker.update([face(box, [0.7, 0.2, 0.1])])[0]
    assert out.label == "happy"
    assert out.probabilities["happy"] == pytest.approx(0.3 * 0.2 + 0.7 * 0.8)
    assert out.score == pytest.approx(out.probabilities["happy"])
    assert sum(out.probabilities.values()) == pytest.approx(1.0)
    # ...but a sustained change does.
    for _ in range(6):
        out = tracker.update([face(box, [0.8, 0.1, 0.1])])[0]
    assert out.label == "angry"


def test_smoothing_off_passes_probabilities_through():
    tracker = FaceTracker(smoothing=False)
    box = (0, 0, 60, 60)
    tracker.update([face(box, [0.1, 0.8, 0.1])])
    out = tracker.update([face(box, [0.7, 0.2, 0.1])])[0]
    assert out.label == "angry" and out.probabilities["angry"] == pytest.approx(0.7)


def test_label_set_change_restarts_smoothing():
    tracker = FaceTracker()
    box = (0, 0, 60, 60)
    tracker.update([face(box, [0.1, 0.8, 0.1])])
    other = FakeFace(box=box, label="b", score=0.9, probabilities={"a": 0.1, "b": 0.9})
    out = tracker.update([other])[0]
    assert out.probabilities == {"a": 0.1, "b": 0.9} and out.track_id == 1


def test_faces_without_probabilities_are_tracked_and_unchanged():
    tracker = FaceTracker()
    original = face((0, 0, 30, 30))
    out = tracker.update([original])[0]
    assert out.track_id == 1 and out.label == "" and original.track_id is None


def test_greedy_matching_prefers_best_overlap():
    tracker = FaceTracker(iou_threshold=0.1)
    tracker.update([face((0, 0, 100, 100)), face((60, 0, 100, 100))])
    out = tracker.update([face((58, 0, 100, 100))])
    assert out[0].track_id == 2


def test_reset_and_bad_alpha():
    tracker = FaceTracker()
    tracker.update([face((0, 0, 30, 30))])
    tracker.reset()
    assert tracker.update([face((0, 0, 30, 30))])[0].track_id == 1
    with pytest.raises(ValueError):
        FaceTracker(alpha=0.0)
