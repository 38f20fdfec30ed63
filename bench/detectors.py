"""Milliseconds per 640x480 frame for each face detector, and faces found, on the real media.

    python bench/detectors.py [--media ../shared/media] [--frames 60] [--detectors haar,hog,cnn]

Photos: faces found at full size (what ``fer-studio predict`` sees), then ms per frame with the photo
resized into a 640x480 frame. Video: every frame resized to 640x480, ms per frame and how many frames
had exactly one face / none / more than one. "cpu" is the process CPU time per frame (all threads),
which other programs on the machine disturb less than wall time. Prints numbers, asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import cv2
import numpy as np

EXPECTED = {"two_people.jpg": 2, "justin.jpg": 1, "12_angry_men.jpg": 9}  # the minimum counts


def _frame(image: np.ndarray, size: tuple[int, int] = (640, 480)) -> np.ndarray:
    """Fit an image into a black 640x480 frame, keeping its aspect ratio."""
    w, h = size
    scale = min(w / image.shape[1], h / image.shape[0])
    resized = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)),
                         interpolation=cv2.INTER_AREA)
    frame = np.zeros((h, w, 3), np.uint8)
    frame[:resized.shape[0], :resized.shape[1]] = resized
    return frame


def _video_frames(path: Path, limit: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or limit
    step = max(1, total // limit)
    frames, index = [], 0
    while len(frames) < limit:
        ok, frame = capture.read()
        if not ok:
            break
        if index % step == 0:
            frames.append(cv2.resize(frame, (640, 480), interpolation=cv2.INTER_AREA))
        index += 1
    capture.release()
    return frames


def _timed(detector, image: np.ndarray) -> tuple[int, float, float]:  # type: ignore[no-untyped-def]
    wall, cpu = time.perf_counter(), time.process_time()
    found = len(detector.detect(image))
    return found, (time.perf_counter() - wall) * 1000.0, (time.process_time() - cpu) * 1000.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--media", default=str(REPO.parent / "shared" / "media"),
                        help="folder with images/ and video/ (default ../shared/media)")
    parser.add_argument("--frames", type=int, default=60, help="video frames per detector (default 60)")
    parser.add_argument("--cnn-frames", type=int, default=5, help="video frames for the slow CNN (default 5)")
    parser.add_argument("--detectors", default="haar,hog,cnn", help="comma-separated (default haar,hog,cnn)")
    args = parser.parse_args()
    warnings.simplefilter("ignore", DeprecationWarning)
    warnings.simplefilter("ignore", UserWarning)  # face_recognition_models' pkg_resources notice

    from app.core.recognition.detection import (
        DEFAULT_DETECTOR,
        VIDEO_OPTIONS,
        create_detector,
        detector_available,
    )
    from app.core.images import list_images, read_image

    media = Path(args.media)
    photos = {p.name: read_image(p) for p in list_images([media / "images"])}
    videos = sorted((media / "video").glob("*.mp4"))
    print(f"OpenCV {cv2.__version__}, {cv2.getNumThreads()} threads; default detector: {DEFAULT_DETECTOR}")
    print(f"photos: {', '.join(f'{k} {v.shape[1]}x{v.shape[0]}' for k, v in photos.items())}")

    runs = []
    for name in [n.strip() for n in args.detectors.split(",") if n.strip()]:
        runs.append((name, {}))
        if name in VIDEO_OPTIONS:
            runs.append((name, VIDEO_OPTIONS[name]))
    for name, extra in runs:
        why = detector_available(name)
        if why:
            print(f"\n== {name}: unavailable ({why})")
            continue
        detector = create_detector(name, **extra)
        options = {k: v for k, v in vars(detector).items() if not k.startswith("_")}
        print(f"\n== {name}{' (VIDEO_OPTIONS)' if extra else ''} {options}")
        detector.detect(np.zeros((480, 640, 3), np.uint8))  # load models before timing
        print(f"  {'photo':<20} {'faces':>5} {'(need)':>6} {'full ms':>8} {'640x480 ms':>10} {'cpu ms':>7}")
        for photo_name, image in photos.items():
            found, full_ms, _ = _timed(detector, image)
            _, frame_ms, frame_cpu = _timed(detector, _frame(image))
            need = EXPECTED.get(photo_name)
            print(f"  {photo_name:<20} {found:>5} {('>=' + str(need)) if need else '':>6} {full_ms:>8.1f} "
                  f"{frame_ms:>10.1f} {frame_cpu:>7.1f}")
        for video in videos:
            frames = _video_frames(video, args.cnn_frames if name == "cnn" else args.frames)
            results = [_timed(detector, frame) for frame in frames]
            counts = [r[0] for r in results]
            walls = [r[1] for r in results]
            cpus = [r[2] for r in results]
            print(f"  video {video.name}: {len(frames)} frames at 640x480: median {statistics.median(walls):.1f} ms "
                  f"(min {min(walls):.1f}), cpu {statistics.median(cpus):.1f} ms; frames with 1 face "
                  f"{counts.count(1)}, none {counts.count(0)}, more {sum(c > 1 for c in counts)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
