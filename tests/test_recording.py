"""Recording: CSV rows per face per frame, readable (flushed) while recording; optional annotated video."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field

import cv2
import numpy as np
import pytest

from app.core.errors import OutputError
from app.core.recording import ResultRecorder

LABELS = ("angry", "happy")


@dataclass
class F:
    box: tuple[int, int, int, int]
    label: str = "happy"
    score: float = 0.7
    probabilities: dict[str, float] = field(default_factory=lambda: {"angry": 0.3, "happy": 0.7})
    track_id: int | None = 1


def test_rows_are_flushed_each_frame(tmp_path):
    path = tmp_path / "out" / "rec.csv"
    recorder = ResultRecorder(path, LABELS)
    recorder.write(0.0, 1, [F((1, 2, 30, 40)), F((50, 2, 30, 40), track_id=2, label="angry", score=0.3)])
    rows = list(csv.DictReader(path.open()))  # not closed yet: already on disk
    assert [r["track_id"] for r in rows] == ["1", "2"]
    assert rows[0]["x"] == "1" and rows[0]["h"] == "40" and rows[0]["p_happy"] == "0.7000"
    recorder.write(0.033, 2, [])  # a frame without faces adds no row
    recorder.write(0.066, 3, [F((1, 2, 30, 40), track_id=None, probabilities={})])
    recorder.close()
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 3 and rows[2]["frame"] == "3"
    assert rows[2]["track_id"] == "" and rows[2]["p_angry"] == ""
    assert recorder.frames == 3


def test_annotated_video(tmp_path):
    drawn = []

    def annotate(image, faces):
        drawn.append(len(faces))
        return cv2.rectangle(image, (1, 1), (20, 20), (0, 0, 255), 2)

    recorder = ResultRecorder(tmp_path / "rec.csv", LABELS, video_path=tmp_path / "rec.mp4", fps=25,
                              annotate=annotate)
    frame = np.zeros((120, 160, 3), np.uint8)
    for i in range(10):
        recorder.write(i / 25, i, [F((10, 10, 40, 40))], frame)
    recorder.close()
    cap = cv2.VideoCapture(str(tmp_path / "rec.mp4"))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 10
    assert drawn == [1] * 10


def test_unwritable_path_is_an_output_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="cannot write the recording"):
        ResultRecorder(blocker / "rec.csv", LABELS)
