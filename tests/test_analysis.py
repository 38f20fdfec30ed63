"""Whole-video analysis on real clips: CSV, people across cuts, summary, report, and every kind of bad input.

The awkward files are made here from real frames: a truncated MP4 (cut before its index, and cut in the
middle of its data), an empty recording, a variable-frame-rate file (uneven frame durations written into
the MP4's table) and a phone video (stored sideways with rotation metadata).
"""

from __future__ import annotations

import csv
import json
import threading

import cv2
import numpy as np
import pytest

from app.core.analysis import AnalysisOptions, analyze_video
from app.core.analysis.outputs import read_faces
from app.core.analysis.video import FrameReader, probe_video
from app.core.errors import OutputError, SourceError
from tests.mp4_edit import faststart, set_frame_durations, set_rotation, timescale

SHOTS = None  # filled from the clip's generator


@pytest.fixture(scope="module")
def pipeline():
    from app.core.recognition.detection import create_detector
    from app.core.recognition.pipeline import build_pipeline

    return build_pipeline(None, detector=create_detector("haar", max_side=480))


def write_video(path, frames, fps=10.0):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                             (frames[0].shape[1], frames[0].shape[0]) if frames else (320, 240))
    for f in frames:
        writer.write(f)
    writer.release()
    return path


def photo_frames(data_dir, name="justin.jpg", n=10, size=(320, 240)):
    photo = cv2.resize(cv2.imread(str(data_dir / name)), size, interpolation=cv2.INTER_AREA)
    return [photo.copy() for _ in range(n)]


def run(video, out, pipeline, **options):
    return analyze_video(video, out, pipeline, AnalysisOptions(**options))


def csv_rows(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# ------------------------------------------------------------------------------------------- real clips

def test_people_clip_numbers_follow_people_across_cuts(data_dir, tmp_path, pipeline):
    from tests.data.make_people_clip import shot_table

    result = run(data_dir / "people_clip.mp4", tmp_path, pipeline, model_name="default", detector="haar")
    assert result.status == "done" and result.error is None
    rows = read_faces(result.files["csv"])
    assert {r["frame"] for r in rows} <= set(range(85))
    by_frame: dict[int, list[int]] = {}
    for r in rows:
        by_frame.setdefault(r["frame"], []).append(r["person"])
    for frame, people in by_frame.items():
        assert len(people) == len(set(people)), f"frame {frame}: two faces share a number {people}"

    def people_in(shot):
        return {p for f in range(shot["first_frame"], shot["last_frame"] + 1) for p in by_frame.get(f, [])}

    shots = shot_table()
    two_a, justin_a, two_b, group, justin_b = (people_in(s) for s in shots)
    assert len(two_a) == 2 and two_b == two_a  # the two people come back with their numbers
    assert len(justin_a) == 1 and justin_b == justin_a  # so does justin
    assert not (two_a & justin_a) and not (group & (two_a | justin_a))  # different people, different numbers
    assert result.people == len(two_a | justin_a | group)

    summary = json.loads((result.folder / "summary.json").read_text())
    assert summary["status"] == "done" and summary["frames_analysed"] == 85
    assert {p["person"] for p in summary["people"]} == two_a | justin_a | group
    assert 0 < summary["face_encodings"] < len(rows) / 2  # encoded when in doubt, not every face
    person = summary["people"][0]
    assert sum(person["share"].values()) == pytest.approx(1.0, abs=1e-3)
    assert len(person["timeline"]) == person["frames"]
    report = (result.folder / "report.html").read_text()
    assert report.count('<section class="person"') == result.people
    assert "data:image/jpeg;base64," in report and report.count("<svg") == result.people
    assert "http" not in report.replace("http://www.w3.org/2000/svg", "")  # self-contained


def test_csv_columns_times_and_every_nth(data_dir, tmp_path, pipeline):
    result = run(data_dir / "woman2_clip.mp4", tmp_path, pipeline, every=3)
    rows = csv_rows(result.files["csv"])
    assert list(rows[0]) == ["time_s", "frame", "person", "x", "y", "w", "h", "label", "score", "uncertain",
                             *(f"p_{k}" for k in pipeline.labels)]
    fps = probe_video(data_dir / "woman2_clip.mp4").fps
    frames = sorted({int(r["frame"]) for r in rows})
    assert all(f % 3 == 0 for f in frames) and len(frames) > 5
    for r in rows:
        assert float(r["time_s"]) == pytest.approx(int(r["frame"]) / fps, abs=0.002)
        probs = [float(r[f"p_{k}"]) for k in pipeline.labels]
        assert sum(probs) == pytest.approx(1.0, abs=0.01)
        assert r["label"] == pipeline.labels[int(np.argmax(probs))]
        assert r["uncertain"] == str(int(max(probs) < pipeline.uncertain_below))


def test_detecting_ahead_on_two_threads_gives_the_same_rows(data_dir, tmp_path, pipeline):
    from app.core.analysis.runner import detector_factory

    video = data_dir / "people_clip.mp4"
    inline = run(video, tmp_path / "one", pipeline, every=2, detect_workers=1)
    make = detector_factory("haar", 480)
    ahead = analyze_video(video, tmp_path / "two", pipeline, AnalysisOptions(every=2, detect_workers=2),
                          make_detector=make)
    assert type(pipeline.detector).__name__ == "HaarDetector"  # the pipeline's own detector is back
    rows = csv_rows(inline.files["csv"])
    assert rows and csv_rows(ahead.files["csv"]) == rows


def test_detect_ahead_keeps_frame_order_and_one_detector_per_thread():
    import time

    from app.core.analysis.detect_ahead import DetectAhead
    from app.core.analysis.video import DecodedFrame

    made = []

    class SlowDetector:
        name = "slow"

        def __init__(self):
            made.append(threading.get_ident())

        def detect(self, image):
            time.sleep(0.02 if int(image[0, 0, 0]) % 2 else 0.001)  # odd frames finish later
            return [int(image[0, 0, 0])]

    frames = [DecodedFrame(i, i / 10, np.full((4, 4, 3), i, np.uint8)) for i in range(12)]
    out = list(DetectAhead(SlowDetector, workers=2, depth=3).run(frames))
    assert [f.index for f, _ in out] == list(range(12)) and [d for _, d in out] == [[i] for i in range(12)]
    assert len(made) == len(set(made)) <= 2


def test_annotated_video_and_outputs_never_overwrite(data_dir, tmp_path, pipeline):
    video = data_dir / "woman2_clip.mp4"
    first = run(video, tmp_path, pipeline, every=4, annotated_video=True)
    before = {p.name: p.read_bytes() for p in first.folder.iterdir()}
    second = run(video, tmp_path, pipeline, every=4)
    assert first.folder.name == "woman2_clip" and second.folder.name == "woman2_clip-2"
    assert {p.name: p.read_bytes() for p in first.folder.iterdir()} == before
    cap = cv2.VideoCapture(first.files["annotated_video"])
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == first.frames_analysed
    cap.release()


def test_stop_keeps_a_valid_csv_and_says_interrupted(data_dir, tmp_path, pipeline):
    stop = threading.Event()
    seen = []

    def on_progress(p):
        seen.append(p.analysed)
        if p.analysed == 5:
            stop.set()

    result = analyze_video(data_dir / "people_clip.mp4", tmp_path, pipeline, AnalysisOptions(), stop=stop,
                           on_progress=on_progress)
    assert result.status == "interrupted" and result.frames_analysed <= 6
    rows = csv_rows(result.files["csv"])
    assert rows and max(int(r["frame"]) for r in rows) <= 5
    summary = json.loads((result.folder / "summary.json").read_text())
    assert summary["status"] == "interrupted" and "stopped" in summary["notes"][0]


# ------------------------------------------------------------------------------------------- bad input

def test_not_a_video_and_still_image_and_empty_file(data_dir, tmp_path, pipeline):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 100)
    empty = tmp_path / "empty.mov"
    empty.write_bytes(b"")
    for path, words in ((text, "not a video"), (data_dir / "justin.jpg", "still image"), (empty, "empty")):
        with pytest.raises(SourceError, match=words):
            run(path, tmp_path / "out", pipeline)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_zero_frames(tmp_path, pipeline):
    video = write_video(tmp_path / "nothing.mp4", [])
    with pytest.raises(SourceError, match="no frames"):
        run(video, tmp_path / "out", pipeline)


def test_truncated_files(data_dir, tmp_path, pipeline):
    source = write_video(tmp_path / "full.mp4", photo_frames(data_dir, n=30))
    data = source.read_bytes()
    cut = tmp_path / "cut.mp4"  # moov (the index) is at the end: cut before it, nothing is decodable
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(SourceError, match="truncated"):
        run(cut, tmp_path / "out", pipeline)
    # Index first (as streaming encoders write), data cut in the middle: the frames before the cut count.
    fast = faststart(source, tmp_path / "fast.mp4").read_bytes()
    half = tmp_path / "half.mp4"
    half.write_bytes(fast[: int(len(fast) * 0.6)])
    result = run(half, tmp_path / "out", pipeline)
    assert result.status == "partial" and "truncated" in result.error
    assert 5 < result.frames_analysed < 30 and result.faces >= result.frames_analysed - 2
    assert any("truncated" in n for n in json.loads((result.folder / "summary.json").read_text())["notes"])


def test_variable_frame_rate_uses_the_container_times(data_dir, tmp_path, pipeline):
    source = write_video(tmp_path / "cfr.mp4", photo_frames(data_dir, n=20))
    unit = timescale(source) // 10
    vfr = set_frame_durations(source, tmp_path / "vfr.mp4", [unit // 2 if i % 2 == 0 else unit * 3 // 2
                                                             for i in range(20)])
    result = run(vfr, tmp_path / "out", pipeline)
    times = {int(r["frame"]): float(r["time_s"]) for r in csv_rows(result.files["csv"])}
    assert times[1] == pytest.approx(0.05, abs=0.002) and times[2] == pytest.approx(0.2, abs=0.002)
    summary = json.loads((result.folder / "summary.json").read_text())
    assert summary["variable_frame_rate"] is True and any("variable frame rate" in n for n in summary["notes"])


def test_phone_rotation_comes_out_upright(data_dir, tmp_path, pipeline):
    upright = photo_frames(data_dir, n=8, size=(240, 320))
    stored = [cv2.rotate(f, cv2.ROTATE_90_COUNTERCLOCKWISE) for f in upright]  # as a phone stores them
    sideways = write_video(tmp_path / "sideways.mp4", stored)
    phone = set_rotation(sideways, tmp_path / "phone.mp4", 90)
    info = probe_video(phone)
    assert (info.width, info.height, info.rotation) == (240, 320, 90)
    frames = list(FrameReader(info))
    assert np.abs(frames[0].image.astype(int) - upright[0]).mean() < 8
    # The upright frontal-face detector finds the face only because the frames were turned upright.
    assert run(sideways, tmp_path / "out", pipeline).faces == 0
    result = run(phone, tmp_path / "out", pipeline)
    assert result.faces == 8
    summary = json.loads((result.folder / "summary.json").read_text())
    assert summary["rotation"] == 90 and summary["width"] == 240


def test_no_face_in_the_whole_video(tmp_path, pipeline):
    wall = np.full((240, 320, 3), (90, 120, 150), np.uint8)
    video = write_video(tmp_path / "wall.mp4", [wall] * 10)
    result = run(video, tmp_path / "out", pipeline)
    assert result.status == "done" and result.faces == 0 and result.people == 0
    assert len(csv_rows(result.files["csv"])) == 0
    assert "No face was found in this video" in (result.folder / "report.html").read_text()


def test_output_folder_that_cannot_be_written(data_dir, tmp_path, pipeline):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="not a folder"):
        run(data_dir / "woman2_clip.mp4", blocker, pipeline)
    with pytest.raises(OutputError, match="cannot create"):
        run(data_dir / "woman2_clip.mp4", blocker / "sub", pipeline)
