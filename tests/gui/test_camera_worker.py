"""The camera worker on a real clip: results with a face, stop latency, bad model, lost source, recording."""

from __future__ import annotations

import csv
import logging
import threading
import time

import cv2
import pytest

from app.core.labels import FER2013_LABELS
from app.core.sources import SourceKind, SourceSpec, open_capture
from app.workers.camera_worker import CameraWorker

logger = logging.getLogger(__name__)


@pytest.fixture
def worker(qtbot):
    workers = []

    def make(**kwargs) -> CameraWorker:
        w = CameraWorker("haar", **kwargs)
        workers.append(w)
        w.start()
        return w

    yield make
    for w in workers:
        assert w.stop(5000)


def wait_frames(qtbot, worker, n=1, timeout=30000, check=lambda p: True):
    got = []

    def on_frame(packet):
        if check(packet):
            got.append(packet)

    worker.frame_ready.connect(on_frame)
    try:
        qtbot.waitUntil(lambda: len(got) >= n, timeout=timeout)
    finally:
        worker.frame_ready.disconnect(on_frame)
    return got


def test_worker_on_real_clip_emits_faces_with_labels(qtbot, worker, tiny_model_path, clip_path):
    w = worker()
    with qtbot.waitSignal(w.model_loaded, timeout=60000) as loaded:
        w.set_model(str(tiny_model_path))
    assert loaded.args[0].labels == FER2013_LABELS
    with qtbot.waitSignal(w.source_started, timeout=10000):
        w.open_source(SourceSpec.file(clip_path), loop=True)
    packets = wait_frames(qtbot, w, n=3, check=lambda p: len(p.faces) >= 1)
    face = packets[-1].faces[0]
    assert face.label in FER2013_LABELS and set(face.probabilities) == set(FER2013_LABELS)
    assert face.track_id == packets[0].faces[0].track_id  # one person, one track
    x, _, bw, _ = face.box
    assert 150 < x + bw / 2 < 450 and bw > 60  # the woman's face, not a false detection in a corner
    t = packets[-1].timings
    for stage in ("capture", "detect", "classify", "track", "total", "fps"):
        assert stage in t
    assert packets[-1].image.shape == (336, 596, 3)


def _release_spy(released: list) -> type:
    """A capture factory whose captures note the time they are released in ``released``."""

    class Spy:
        def __init__(self, spec):
            self.cap = open_capture(spec)

        def __getattr__(self, name):
            return getattr(self.cap, name)

        def release(self):
            released.append(time.monotonic())
            self.cap.release()

    return Spy


def test_stop_ends_thread_and_releases_capture_quickly(qtbot, worker, clip_path):
    released = []

    w = worker(capture_factory=_release_spy(released))
    w.open_source(SourceSpec.file(clip_path), loop=True)
    wait_frames(qtbot, w, n=5)
    start = time.monotonic()
    assert w.stop(5000) and w.isFinished()  # stop() waits for the thread: no timing assertion needed
    logger.info("worker stop took %.3f s", time.monotonic() - start)  # the number, for the curious
    assert released and start <= released[-1] <= time.monotonic()  # released by stop(), not after it


def test_close_source_reports_stopped_and_worker_stays_usable(qtbot, worker, clip_path, data_dir):
    w = worker()
    w.open_source(SourceSpec.file(clip_path), loop=True)
    wait_frames(qtbot, w)
    with qtbot.waitSignal(w.source_stopped, timeout=3000) as stopped:
        w.close_source()
    assert stopped.args == ["stopped"]
    with qtbot.waitSignal(w.photo_ready, timeout=30000) as photo:
        w.process_image(str(data_dir / "two_people.jpg"))
    assert len(photo.args[0].faces) == 2 and all(f.label == "" for f in photo.args[0].faces)


def test_bad_model_reports_error_and_old_model_keeps_running(qtbot, worker, tiny_model_path, clip_path,
                                                             tmp_path):
    w = worker()
    with qtbot.waitSignal(w.model_loaded, timeout=60000):
        w.set_model(str(tiny_model_path))
    w.open_source(SourceSpec.file(clip_path), loop=True)
    wait_frames(qtbot, w, check=lambda p: bool(p.faces))
    bad = tmp_path / "broken.h5"
    bad.write_bytes(tiny_model_path.read_bytes()[:3000])  # a truncated download
    with qtbot.waitSignal(w.model_failed, timeout=30000) as failed:
        w.set_model(str(bad))
    assert failed.args[0] == str(bad) and "broken.h5" in failed.args[1]
    before = w.processed
    after = wait_frames(qtbot, w, n=3, check=lambda p: bool(p.faces))
    assert w.processed > before
    assert after[-1].labels == FER2013_LABELS and after[-1].faces[0].label in FER2013_LABELS


def test_switching_model_while_running_swaps_it_in(qtbot, worker, tiny_model_path, clip_path, tmp_path):
    import keras

    from app.core.model_io import ModelSpec, save_model

    inputs = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
    three = tmp_path / "three.keras"
    save_model(keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x)), three,
               ModelSpec(labels=("calm", "joy", "other"), input_size=(32, 32), channels=3,
                         normalization="zero_1"))
    w = worker()
    w.set_model(str(tiny_model_path))
    w.open_source(SourceSpec.file(clip_path), loop=True)
    wait_frames(qtbot, w, check=lambda p: bool(p.faces) and p.labels == FER2013_LABELS)
    with qtbot.waitSignal(w.model_loaded, timeout=60000) as loaded:
        w.set_model(str(three))
    assert loaded.args[0].input_size == (32, 32) and loaded.args[0].channels == 3
    packet = wait_frames(qtbot, w, check=lambda p: bool(p.faces) and p.labels == ("calm", "joy", "other"))[0]
    assert set(packet.faces[0].probabilities) == {"calm", "joy", "other"}


def test_end_of_file_without_loop_stops(qtbot, worker, clip_path):
    w = worker()
    with qtbot.waitSignal(w.source_stopped, timeout=20000) as stopped:
        w.open_source(SourceSpec.file(clip_path), loop=False)
    assert stopped.args == ["ended"]


def test_unopenable_source_is_reported(qtbot, worker, tmp_path):
    w = worker()
    with qtbot.waitSignal(w.source_stopped, timeout=5000) as stopped:
        w.open_source(SourceSpec.file(tmp_path / "missing.mp4"))
    assert "cannot open video file" in stopped.args[0]


class FlakyCamera:
    """A 'camera' fed from the real clip that is unplugged after 8 frames and refuses the first reconnect."""

    opens = 0

    def __init__(self, clip):
        self.cap = cv2.VideoCapture(str(clip))
        FlakyCamera.opens += 1
        self.ok = FlakyCamera.opens != 2  # the first reconnection attempt fails
        self.left = 8 if FlakyCamera.opens == 1 else 10_000

    def isOpened(self):
        return self.ok

    def read(self):
        if self.left <= 0:
            return False, None
        self.left -= 1
        time.sleep(1 / 30)  # a camera delivers at its frame rate
        ok, frame = self.cap.read()
        if not ok:  # loop the clip: a camera never ends
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self.cap.read()
        return ok, frame

    def get(self, prop):
        return self.cap.get(prop)

    def release(self):
        self.cap.release()


def test_source_failing_mid_stream_is_reported_and_retried(qtbot, worker, clip_path):
    FlakyCamera.opens = 0
    w = worker(capture_factory=lambda spec: FlakyCamera(clip_path), backoff=(0.05, 0.1))
    messages = []
    w.status.connect(messages.append)
    w.open_source(SourceSpec.camera(0))
    wait_frames(qtbot, w)
    qtbot.waitUntil(lambda: any("reconnected" in m for m in messages), timeout=10000)
    assert any("camera 0 stopped delivering frames" in m for m in messages)
    assert any("reconnecting in 0.05 s (attempt 1)" in m for m in messages)
    assert any("attempt 2" in m for m in messages)
    later = wait_frames(qtbot, w, n=2)
    assert later[-1].frame_index > 8 and FlakyCamera.opens == 3  # first open, failed retry, good retry


def test_recording_writes_flushed_csv_rows(qtbot, worker, tiny_model_path, clip_path, tmp_path):
    w = worker()
    w.set_model(str(tiny_model_path))
    w.open_source(SourceSpec.file(clip_path), loop=True)
    wait_frames(qtbot, w, check=lambda p: bool(p.faces) and bool(p.labels))
    out = tmp_path / "rec.csv"
    w.start_recording(str(out))
    wait_frames(qtbot, w, n=5)
    rows = list(csv.DictReader(out.open()))  # read while recording: already flushed
    assert rows and rows[0]["track_id"] and rows[0]["label"] in FER2013_LABELS
    assert all(f"p_{label}" in rows[0] for label in FER2013_LABELS)
    assert abs(sum(float(rows[0][f"p_{label}"]) for label in FER2013_LABELS) - 1.0) < 0.01
    w.stop_recording()


def test_capture_is_released_even_while_a_slow_frame_is_processed(qtbot, worker, clip_path):
    released, busy = [], []

    w = worker(capture_factory=_release_spy(released))
    real_process = w._recognizer.process_frame

    done = []

    def slow_process(image, time_s=None):  # a detector taking 3 s per frame (dlib's CNN on a slow CPU)
        busy.append(time.monotonic())
        time.sleep(3.0)
        done.append(time.monotonic())
        return real_process(image, time_s)

    w._recognizer.process_frame = slow_process
    w.open_source(SourceSpec.file(clip_path), loop=True)
    qtbot.waitUntil(lambda: bool(busy), timeout=30000)
    start = time.monotonic()
    w.close_source()
    qtbot.waitUntil(lambda: bool(released), timeout=5000)
    logger.info("capture released %.3f s after Stop during a slow frame", released[0] - start)
    # Released while the worker was still inside the slow frame, not when it came out of it.
    assert not done or released[0] < done[0]
    with qtbot.waitSignal(w.source_stopped, timeout=5000):
        pass


def test_model_with_embedded_code_is_refused_unless_trusted(qtbot, worker, tmp_path):
    import keras

    from app.core.model_io import ModelSpec, save_model

    inputs = keras.Input((48, 48, 1))
    x = keras.layers.Lambda(lambda t: t * 1.0)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(x))
    path = tmp_path / "lambda.keras"
    save_model(keras.Model(inputs, keras.layers.Dense(7, activation="softmax")(x)), path,
               ModelSpec(labels=FER2013_LABELS, input_size=(48, 48), channels=1))
    w = worker()
    with qtbot.waitSignal(w.model_failed, timeout=60000) as failed:
        w.set_model(str(path))
    assert failed.args[2] is True and "refused" in failed.args[1]
    with qtbot.waitSignal(w.model_loaded, timeout=60000) as loaded:
        w.set_model(str(path), trust=True)
    assert loaded.args[0].labels == FER2013_LABELS


def test_a_stalled_old_source_cannot_end_the_new_one(qtbot, worker, clip_path):
    """Switch away from a stream stuck in its open; when it finally fails, the new session plays on."""
    gate, old_done = threading.Event(), threading.Event()

    def factory(spec):
        if spec.kind is SourceKind.STREAM:  # the stalled stream: blocks, then fails to open
            try:
                gate.wait(10)
                return None
            finally:
                old_done.set()
        return open_capture(spec)

    w = worker(capture_factory=factory)
    stopped = []
    w.source_stopped.connect(stopped.append)
    w.open_source(SourceSpec.stream("rtsp://camera.invalid/stalled"))
    with qtbot.waitSignal(w.source_started, timeout=10000) as started:
        w.open_source(SourceSpec.file(clip_path), loop=True)  # the old capture thread is still stuck
    assert "woman2_clip" in started.args[0]
    wait_frames(qtbot, w, n=2)
    gate.set()  # the old stream now fails to open and posts its failure
    assert old_done.wait(10)
    before = w.processed
    wait_frames(qtbot, w, n=5)  # the new session goes on...
    assert w.processed > before and w._session is not None
    assert stopped == []  # ...and was never ended by the old source's error


def test_bundled_model_through_the_worker_labels_a_smile_happy(qtbot, worker, data_dir):
    from app.core.model_io import default_model_path

    w = worker()
    with qtbot.waitSignal(w.model_loaded, timeout=60000):
        w.set_model(str(default_model_path()))
    labels = {}
    for name in ("justin.jpg", "12_angry_men.jpg"):
        with qtbot.waitSignal(w.photo_ready, timeout=30000) as photo:
            w.process_image(str(data_dir / name))
        labels[name] = [f.label for f in photo.args[0].faces]
    assert labels["justin.jpg"] == ["happy"]
    assert len(labels["12_angry_men.jpg"]) >= 9 and {"neutral", "sad"} <= set(labels["12_angry_men.jpg"])


def test_recorded_csv_and_video_read_back(qtbot, worker, tiny_model_path, clip_path, tmp_path):
    """Every processed frame is in the CSV and in the annotated mp4, which is the clip's size and drawn."""
    w = worker()
    with qtbot.waitSignal(w.model_loaded, timeout=60000):
        w.set_model(str(tiny_model_path))
    w.open_source(SourceSpec.file(clip_path), loop=True)  # a busy machine drops frames: keep it coming
    wait_frames(qtbot, w, check=lambda p: bool(p.faces))
    packets, news = [], []
    w.frame_ready.connect(packets.append)  # every processed frame (no max_pending), in order
    w.status.connect(news.append)
    out_csv, out_mp4 = tmp_path / "rec.csv", tmp_path / "rec.mp4"
    w.start_recording(str(out_csv), str(out_mp4))
    qtbot.waitUntil(lambda: len({p.frame_index for p in packets if p.faces}) >= 10, timeout=60000)
    w.stop_recording()
    qtbot.waitUntil(lambda: any("Recording saved" in n for n in news), timeout=10000)
    w.frame_ready.disconnect(packets.append)
    rows = list(csv.DictReader(out_csv.open()))
    frames = sorted({int(r["frame"]) for r in rows})
    assert len(frames) >= 5
    assert all(r["label"] in FER2013_LABELS and r["track_id"] for r in rows)
    times = [float(r["time_s"]) for r in rows]
    assert times == sorted(times)
    capture = cv2.VideoCapture(str(out_mp4))
    written = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        written.append(frame)
    capture.release()
    # The recording holds the last processed frames before it was saved, one video frame each.
    recorded = [p for p in packets if p.frame_index >= frames[0]]
    assert len(written) >= len(frames) and written[0].shape == (336, 596, 3)
    assert {p.frame_index for p in recorded if p.faces} <= set(frames)
    # Each face is drawn: along its box's left edge the video differs from the frame as it was read.
    same = recorded[-len(written):] if len(recorded) >= len(written) else recorded
    drawn = 0
    for packet, video_frame in zip(same, written[-len(same):]):
        for face in packet.faces:
            x, y, _, h = face.box
            edge = (slice(y + h // 4, y + 3 * h // 4), slice(max(0, x - 1), x + 2))
            drawn += abs(video_frame[edge].astype(int) - packet.image[edge].astype(int)).mean() > 20
    assert drawn >= len([p for p in same if p.faces]) * 0.8


def test_recording_never_writes_over_the_source(qtbot, worker, tiny_model_path, clip_path, tmp_path):
    source = tmp_path / "clip.mp4"
    source.write_bytes(clip_path.read_bytes())
    before = source.read_bytes()
    w = worker()
    w.open_source(SourceSpec.file(source), loop=True)
    wait_frames(qtbot, w)
    with qtbot.waitSignal(w.error, timeout=5000) as refused:
        w.start_recording(str(tmp_path / "clip.csv"), str(source))
    assert "would replace the video being recorded" in refused.args[0]
    other = tmp_path / "other.mp4"
    other.write_bytes(b"an existing video")
    with qtbot.waitSignal(w.error, timeout=5000) as refused:
        w.start_recording(str(tmp_path / "clip.csv"), str(other))
    assert "exists already" in refused.args[0]
    wait_frames(qtbot, w, n=3)
    assert source.read_bytes() == before and other.read_bytes() == b"an existing video"
