"""Recall and milliseconds per frame of each face detector, on real faces.

    python bench/detectors.py [--media ../shared/media] [--detectors hog,haar,cnn] [--frames 40]
    python bench/detectors.py --write-fixtures tests/data/faces     # the small copies the tests use

Recall is measured against hand-checked face boxes (GROUND_TRUTH: every face a person would expect to be
found; a face hidden by more than half is not counted) on:

- photos:    the five photos in ../shared/media/images;
- portraits: each face cut out with a margin, as a studio or passport photo;
- turned:    those portraits rotated by 20 degrees either way (a head tilted);
- partial:   those portraits with a third of the face cut off at the image edge;
- rgba:      those portraits saved as RGBA PNGs with a transparent border and read back;
- dark:      those portraits under-exposed with low contrast;
- fer2013:   35 FER2013 PublicTest faces (5 per expression, 48 px, upscaled four times with a border):
             studio-like expression photos, open mouths and frowns included.

Each set is searched twice over: as photos (the detector's photo size), and fitted into a 640x480
frame searched at each live-video size, as the camera worker searches a frame. A detection counts when
its centre lies within half a face of the true centre and its size is within 0.4-2.5x the true size;
the others are shown as "other boxes" (false faces, or on portraits cut from group photos often a
neighbour's real face). Then ms per 640x480 frame of the video
(woman2.mp4) at each live-video size. "cpu" is the process CPU time (all threads), which other programs
on a shared machine disturb less than wall time. Prints numbers, asserts nothing.
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.core.images import read_image  # noqa: E402
from app.core.recognition.detection import (  # noqa: E402
    DEFAULT_DETECTOR,
    VIDEO_SIZES,
    create_detector,
    detector_available,
)

Box = tuple[int, int, int, int]
#: Hand-checked faces (x, y, w, h) of ../shared/media/images. 12_angry_men: the man half hidden behind
#: the one with glasses is not counted; the one behind the hat (top left) is.
GROUND_TRUTH: dict[str, list[Box]] = {
    "12_angry_men.jpg": [(25, 233, 165, 165), (102, 109, 90, 83), (270, 225, 137, 137), (455, 161, 115, 115),
                         (580, 188, 80, 80), (708, 161, 115, 115), (855, 366, 165, 164), (945, 156, 96, 96),
                         (1060, 236, 80, 80), (1147, 242, 96, 96)],
    "group_selfie.jpg": [(315, 365, 113, 111), (580, 436, 93, 94), (781, 886, 476, 477), (856, 396, 94, 93),
                         (1194, 416, 94, 93), (1542, 385, 94, 94)],
    "obama.jpg": [(375, 154, 237, 237)],
    "two_people.jpg": [(225, 54, 164, 165), (795, 85, 138, 137)],
    "justin.jpg": [(92, 94, 165, 165)],
}

Sample = tuple[str, np.ndarray, list[Box]]  # name, BGR image, true faces


# ------------------------------------------------------------------------------------------- the sets


def _fit(image: np.ndarray, boxes: list[Box], size: tuple[int, int] = (640, 480)) -> tuple[np.ndarray, list[Box]]:
    """The image fitted into a black 640x480 frame (aspect kept), and its boxes moved with it."""
    w, h = size
    scale = min(w / image.shape[1], h / image.shape[0])
    resized = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)),
                         interpolation=cv2.INTER_AREA)
    frame = np.zeros((h, w, 3), np.uint8)
    frame[:resized.shape[0], :resized.shape[1]] = resized
    return frame, [tuple(round(v * scale) for v in b) for b in boxes]  # type: ignore[misc]


def _portrait(image: np.ndarray, box: Box, face_px: int = 160, margin: float = 0.8) -> tuple[np.ndarray, Box]:
    """The face cut out with ``margin`` of its size on each side (edge pixels repeated), face ``face_px`` high."""
    x, y, w, h = box
    pad = int(margin * max(w, h))
    padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    crop = padded[y:y + h + 2 * pad, x:x + w + 2 * pad]
    scale = face_px / h
    crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    return crop, (round(pad * scale), round(pad * scale), round(w * scale), round(h * scale))


def _rotate(image: np.ndarray, box: Box, degrees: float) -> tuple[np.ndarray, Box]:
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    rotated = cv2.warpAffine(image, matrix, (w, h), borderMode=cv2.BORDER_REPLICATE)
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    nx, ny = matrix @ np.array([cx, cy, 1.0])
    return rotated, (round(nx - box[2] / 2), round(ny - box[3] / 2), box[2], box[3])


def _cut(image: np.ndarray, box: Box, left: bool) -> tuple[np.ndarray, Box]:
    """A third of the face cut off at the image's left (or right) edge."""
    x, y, w, h = box
    if left:
        start = x + w // 3
        return image[:, start:], (x - start, y, w, h)
    return image[:, :x + w - w // 3], box


def _rgba_round_trip(image: np.ndarray, folder: Path, name: str) -> np.ndarray:
    """Saved as an RGBA PNG with a transparent 10 % border, then read back as a user's file would be."""
    bgra = cv2.cvtColor(image, cv2.COLOR_BGR2BGRA)
    border = max(1, image.shape[0] // 10)
    bgra[:border, :, 3] = 0
    bgra[-border:, :, 3] = 0
    path = folder / f"{name}.png"
    cv2.imwrite(str(path), bgra)
    return read_image(path)


def _dark(image: np.ndarray) -> np.ndarray:
    """Under-exposed, low contrast: a dim room."""
    lut = (np.linspace(0, 1, 256) ** 2.2 * 120 + 10).astype(np.uint8)
    return cv2.LUT(image, lut)


def _fer_faces(csv_gz: Path, per_class: int = 5) -> list[np.ndarray]:
    faces: list[np.ndarray] = []
    taken = [0] * 7
    with gzip.open(csv_gz, "rt") as handle:
        next(handle)
        for line in handle:
            emotion, pixels, usage = line.strip().split(",")
            if usage != "PublicTest" or taken[int(emotion)] >= per_class:
                continue
            taken[int(emotion)] += 1
            face = np.array(pixels.split(), np.uint8).reshape(48, 48)
            face = cv2.copyMakeBorder(face, 16, 16, 16, 16, cv2.BORDER_REPLICATE)  # a little context
            faces.append(cv2.cvtColor(cv2.resize(face, (320, 320), interpolation=cv2.INTER_CUBIC),
                                      cv2.COLOR_GRAY2BGR))
            if sum(taken) == 7 * per_class:
                break
    return faces


def build_sets(media: Path, fer_csv: Path | None, scratch: Path) -> dict[str, list[Sample]]:
    photos = {name: read_image(media / "images" / name) for name in GROUND_TRUTH}
    sets: dict[str, list[Sample]] = {"photos": [(n, im, GROUND_TRUTH[n]) for n, im in photos.items()]}
    for key in ("portraits", "turned", "partial", "rgba", "dark"):
        sets[key] = []
    for name, image in photos.items():
        for i, box in enumerate(GROUND_TRUTH[name]):
            tag = f"{Path(name).stem}_{i}"
            portrait, face = _portrait(image, box)
            sets["portraits"].append((tag, portrait, [face]))
            for degrees in (20, -20):
                turned, moved = _rotate(portrait, face, degrees)
                sets["turned"].append((f"{tag}_rot{degrees:+d}", turned, [moved]))
            cut, moved = _cut(portrait, face, left=i % 2 == 0)
            sets["partial"].append((f"{tag}_cut", cut, [moved]))
            sets["rgba"].append((f"{tag}_rgba", _rgba_round_trip(portrait, scratch, tag), [face]))
            sets["dark"].append((f"{tag}_dark", _dark(portrait), [face]))
    if fer_csv is not None and fer_csv.is_file():
        sets["fer2013"] = [(f"fer_{i}", face, [(64, 64, 192, 192)]) for i, face in enumerate(_fer_faces(fer_csv))]
    return sets


# ------------------------------------------------------------------------------------------- scoring


def match(found: list[Box], truth: list[Box]) -> tuple[int, int]:
    """(true faces found, false faces): greedy, each detection matches at most one true face."""
    used: set[int] = set()
    hits = 0
    for tx, ty, tw, th in truth:
        tcx, tcy, size = tx + tw / 2, ty + th / 2, max(tw, th)
        for j, (x, y, w, h) in enumerate(found):
            if j in used:
                continue
            close = abs(x + w / 2 - tcx) <= size / 2 and abs(y + h / 2 - tcy) <= size / 2
            if close and 0.4 <= max(w, h) / size <= 2.5:
                used.add(j)
                hits += 1
                break
    return hits, len(found) - len(used)


def _timed(detect: Callable[[np.ndarray], list], image: np.ndarray) -> tuple[list[Box], float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    boxes = [d.box for d in detect(image)]
    return boxes, (time.perf_counter() - wall) * 1000.0, (time.process_time() - cpu) * 1000.0


def _video_frames(path: Path, limit: int) -> Iterator[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or limit
    step, index, given = max(1, total // limit), 0, 0
    while given < limit:
        ok, frame = capture.read()
        if not ok:
            break
        if index % step == 0:
            given += 1
            yield cv2.resize(frame, (640, 480), interpolation=cv2.INTER_AREA)
        index += 1
    capture.release()


def _recall(detect: Callable[[np.ndarray], list], samples: list[Sample],
            live: bool) -> tuple[int, int, int, list[float], list[str]]:
    """(found, faces, other boxes, ms per image, names of images with a face missed) for one set."""
    hits = faces = other = 0
    times: list[float] = []
    missed: list[str] = []
    for name, image, truth in samples:
        if live:
            image, truth = _fit(image, truth)
        boxes, ms, _ = _timed(detect, image)
        h, o = match(boxes, truth)
        hits, faces, other = hits + h, faces + len(truth), other + o
        times.append(ms)
        if h < len(truth):
            missed.append(name)
    return hits, faces, other, times, missed


def run(name: str, sets: dict[str, list[Sample]], videos: list[Path], frames: int) -> None:
    photo_detector = create_detector(name)
    photo_detector.detect(np.zeros((480, 640, 3), np.uint8))  # load models before timing
    sizes = [s for s in VIDEO_SIZES if s] if name != "cnn" else [640]
    live = {size: create_detector(name, max_side=size) for size in sizes}
    configs = [("photo", photo_detector, False)] + [(f"live {s}", live[s], True) for s in sizes]
    print(f"\n== {name}{' (default)' if name == DEFAULT_DETECTOR else ''}: photos searched at "
          f"{photo_detector.max_side} px; live: each image fitted into a 640x480 frame, searched at the size shown")
    print("  recall (other boxes)  " + "".join(f"{label:>17}" for label, _, _ in configs))
    totals = {label: [0, 0] for label, _, _ in configs}
    missed: list[str] = []
    for set_name, samples in sets.items():
        cells = []
        for label, detector, is_live in configs:
            hits, faces, other, _, miss = _recall(detector.detect, samples, is_live)
            totals[label][0] += hits
            totals[label][1] += faces
            cells.append(f"{hits:>4}/{faces:<3} {100 * hits / faces:>3.0f}% ({other})")
            if label == "photo" and set_name != "photos":
                missed += miss
        print(f"  {set_name:<21}" + "".join(f"{c:>17}" for c in cells))
    print(f"  {'all':<21}" + "".join(f"{f'{h}/{n} {100 * h / n:.0f}%':>17}" for h, n in totals.values()))
    if missed:
        print(f"  missed as photos: {', '.join(missed[:10])}{' ...' if len(missed) > 10 else ''}")
    for video in videos:
        print(f"  {video.name}, 640x480 frames:  size  ms/frame  cpu ms  frames with 1 face / none / more")
        for size in sizes:
            n = max(3, frames // 8) if name == "cnn" else frames
            results = [_timed(live[size].detect, frame) for frame in _video_frames(video, n)]
            counts = [len(r[0]) for r in results]
            print(f"  {'':<32}{size:>5} {statistics.median(r[1] for r in results):>9.1f} "
                  f"{statistics.median(r[2] for r in results):>7.1f}  {counts.count(1)} / {counts.count(0)} / "
                  f"{sum(c > 1 for c in counts)} of {len(counts)}")


def write_fixtures(sets: dict[str, list[Sample]], folder: Path) -> None:
    """Small copies of a varied handful (turned, partial, RGBA, dark) for tests/data."""
    folder.mkdir(parents=True, exist_ok=True)
    wanted = {"turned": ("obama_0_rot+20", "two_people_1_rot-20", "group_selfie_3_rot+20"),
              "partial": ("justin_0_cut", "12_angry_men_5_cut"),
              "dark": ("two_people_0_dark",),
              "rgba": ("group_selfie_1_rgba",)}
    for set_name, names in wanted.items():
        for name, image, _ in sets[set_name]:
            if name in names:
                if set_name == "rgba":  # smaller, so the PNG stays small
                    bgra = cv2.cvtColor(cv2.resize(image, None, fx=0.7, fy=0.7, interpolation=cv2.INTER_AREA),
                                        cv2.COLOR_BGR2BGRA)
                    bgra[: bgra.shape[0] // 10, :, 3] = 0
                    cv2.imwrite(str(folder / f"{name}.png"), bgra, [cv2.IMWRITE_PNG_COMPRESSION, 9])
                else:
                    cv2.imwrite(str(folder / f"{name}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 85])
                print(f"wrote {folder / name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--media", type=Path, default=REPO.parent / "shared" / "media",
                        help="folder with images/ and video/ (default ../shared/media)")
    parser.add_argument("--fer", type=Path, default=REPO / "tests" / "data" / "fer2013_sample.csv.gz",
                        help="FER2013 rows for the fer2013 set (default: the test fixture)")
    parser.add_argument("--frames", type=int, default=40, help="video frames per size (default 40)")
    parser.add_argument("--detectors", default="hog,haar,cnn", help="comma-separated (default hog,haar,cnn)")
    parser.add_argument("--write-fixtures", type=Path, metavar="DIR", help="write the test fixtures and stop")
    args = parser.parse_args()
    warnings.simplefilter("ignore", DeprecationWarning)
    warnings.simplefilter("ignore", UserWarning)  # face_recognition_models' pkg_resources notice
    with tempfile.TemporaryDirectory() as scratch:
        sets = build_sets(args.media, args.fer, Path(scratch))
    if args.write_fixtures:
        write_fixtures(sets, args.write_fixtures)
        return 0
    videos = sorted((args.media / "video").glob("*.mp4"))
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; "
          f"OpenCV {cv2.__version__}; default detector: {DEFAULT_DETECTOR}")
    print("faces per set: " + ", ".join(f"{k} {sum(len(s[2]) for s in v)}" for k, v in sets.items()))
    for name in [n.strip() for n in args.detectors.split(",") if n.strip()]:
        why = detector_available(name)
        if why:
            print(f"\n== {name}: unavailable ({why})")
            continue
        run(name, sets, videos, args.frames)
    return 0


if __name__ == "__main__":
    sys.exit(main())
