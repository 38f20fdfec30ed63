"""Sources: parsing, real video files (end, loop), clear errors, camera listing, lost source + reconnect."""

from __future__ import annotations

import time

import numpy as np
import pytest

from app.core.errors import SourceError
from app.core.sources import DEMO_CLIP, EndOfStream, SourceKind, SourceLost, SourceSpec, VideoSource, list_cameras


@pytest.fixture(scope="module")
def clip(data_dir):
    return data_dir / "woman2_clip.mp4"


def count_frames(source: VideoSource) -> int:
    n = 0
    try:
        while True:
            source.read()
            n += 1
    except EndOfStream:
        return n


def test_parse_and_round_trip():
    assert SourceSpec.parse("0") == SourceSpec(SourceKind.CAMERA, 0)
    assert SourceSpec.parse("rtsp://cam.local/live").kind is SourceKind.STREAM
    assert SourceSpec.parse("http://host:8080/video.mjpg").kind is SourceKind.STREAM
    assert SourceSpec.parse("/videos/clip.mp4") == SourceSpec(SourceKind.FILE, "/videos/clip.mp4")
    assert SourceSpec.parse("file:///videos/clip.mp4").target == "/videos/clip.mp4"
    for spec in (SourceSpec.camera(2), SourceSpec.file("/a b/ç.mp4"), SourceSpec.stream("rtsp://x/y")):
        assert SourceSpec.parse(spec.to_text()) == spec
    assert SourceSpec.camera(0).is_live and not SourceSpec.file("x.mp4").is_live


def test_reads_a_real_file_to_its_end(clip):
    with VideoSource(SourceSpec.file(clip)) as source:
        frame = source.read()
        assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
        assert source.fps == pytest.approx(29.97, abs=0.1)
        assert 1 + count_frames(source) == 45
        with pytest.raises(EndOfStream):
            source.read()
    assert not source.is_open


def test_loop_starts_again(clip):
    with VideoSource(SourceSpec.file(clip), loop=True) as source:
        for _ in range(100):  # more than the clip's 45 frames
            source.read()
        assert source.frame_index == 100


def test_realtime_paces_file_frames(clip):
    with VideoSource(SourceSpec.file(clip), realtime=True) as source:
        start = time.monotonic()
        for _ in range(10):
            source.read()
        elapsed = time.monotonic() - start
    assert elapsed >= 8 / 30  # ~9 frame intervals at 29.97 fps; generous lower bound only


def test_demo_clip_is_bundled_and_small():
    assert DEMO_CLIP.is_file() and DEMO_CLIP.stat().st_size < 2_000_000
    with VideoSource(SourceSpec.file(DEMO_CLIP)) as source:
        assert source.read().shape[:2] == (336, 596)


def test_missing_file_message(tmp_path):
    missing = tmp_path / "nope.mp4"
    with pytest.raises(SourceError, match=r"cannot open video file .*nope\.mp4"):
        VideoSource(SourceSpec.file(missing)).open()


def test_truncated_or_non_video_file_message(tmp_path, clip):
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(clip.read_bytes()[:20000])
    with pytest.raises(SourceError, match="cannot open video file"):
        VideoSource(SourceSpec.file(truncated)).open()
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    with pytest.raises(SourceError, match="cannot open video file"):
        VideoSource(SourceSpec.file(text)).open()


def test_missing_camera_is_reported_quickly():
    cameras = list_cameras(timeout_s=0.5)  # probing is bounded by its timeout, whatever the drivers do
    if cameras:
        pytest.skip("this machine has a camera")
    with pytest.raises(SourceError, match="no camera found"):
        VideoSource(SourceSpec.camera(0)).open()


def test_dead_stream_message():
    # Port 9 (discard) on localhost: connection refused at once, no network needed.
    with pytest.raises(SourceError, match="cannot open stream"):
        VideoSource(SourceSpec.stream("http://127.0.0.1:9/video.mjpg")).open()


class FlakyCapture:
    """A camera that delivers ``frames`` frames, then fails (unplugged)."""

    opened = 0

    def __init__(self, frames: int = 3, available: bool = True):
        self.frames, self.available = frames, available
        FlakyCapture.opened += 1

    def isOpened(self):
        return self.available

    def read(self):
        if self.frames <= 0:
            return False, None
        self.frames -= 1
        return True, np.zeros((48, 64, 3), np.uint8)

    def get(self, prop):
        return 30.0

    def release(self):
        pass


def test_lost_camera_raises_and_reconnects_with_backoff():
    FlakyCapture.opened = 0
    plan = iter([True, False, False, True])  # open; then two failed reconnects; then back

    source = VideoSource(SourceSpec.camera(0), backoff=(0.01, 0.02),
                         capture_factory=lambda spec: FlakyCapture(2, next(plan)))
    source.open()
    source.read(), source.read()
    with pytest.raises(SourceLost, match="camera 0 stopped delivering frames"):
        source.read()
    assert not source.is_open
    attempts = []
    assert source.reconnect(on_attempt=lambda n, delay: attempts.append((n, delay)))
    assert attempts == [(1, 0.01), (2, 0.02), (3, 0.02)]
    assert source.read().shape == (48, 64, 3) and source.frame_index == 3


def test_reconnect_honours_stop_and_max_attempts():
    source = VideoSource(SourceSpec.stream("rtsp://x/y"), backoff=(5.0,),
                         capture_factory=lambda spec: FlakyCapture(0, False))
    polls = []
    assert not source.reconnect(should_stop=lambda: polls.append(1) or len(polls) > 3)
    assert len(polls) == 4  # polled during the 5 s back-off, which it left at the stop request
    quick = VideoSource(SourceSpec.stream("rtsp://x/y"), backoff=(0.0,),
                        capture_factory=lambda spec: FlakyCapture(0, False))
    assert not quick.reconnect(max_attempts=3)
