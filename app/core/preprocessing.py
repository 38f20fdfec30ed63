"""Turn raw photos in class folders into a folder-per-class set of face crops, plus ``description.csv``.

RAW_DIR holds one sub-folder per class with photos of any size. Every face found (a group photo gives
several samples) is cut out as a square around the detector's box widened by ``margin``, optionally
levelled by the eyes (``align``), resized to ``size`` and written as ``OUT/<class>/<photo>_<i>.png``.
``OUT/description.csv`` lists ``path,label`` (paths relative to OUT). Photos without a face and files
that cannot be read are reported and skipped; the run goes on.

Safety: nothing is ever written inside RAW_DIR, an OUT that exists and is not empty is refused, and the
set is built in a hidden sibling folder that is renamed to OUT only when complete, so an interrupted
run never leaves half a data set behind.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from app.core.errors import DatasetError, ImageReadError, OutputError
from app.core.labels import IMAGE_EXTENSIONS

logger = logging.getLogger(__name__)

DESCRIPTION_NAME = "description.csv"
PROBLEMS_NAME = "problems.csv"


@dataclass
class PreprocessResult:
    """What a run produced and what it had to skip."""

    out_dir: Path
    samples: list[tuple[str, str]] = field(default_factory=list)  # (path relative to out_dir, label)
    photos: dict[str, int] = field(default_factory=dict)  # label -> photos read
    no_face: list[Path] = field(default_factory=list)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)  # files that are not images, or outside class folders
    empty_classes: list[str] = field(default_factory=list)

    def faces_per_class(self) -> dict[str, int]:
        counts = {label: 0 for label in self.photos}
        for _, label in self.samples:
            counts[label] = counts.get(label, 0) + 1
        return counts


def square_crop(image: np.ndarray, box: tuple[int, int, int, int], margin: float, size: int) -> np.ndarray:
    """A ``size`` x ``size`` crop of the square around ``box`` widened by ``margin`` on each side.

    Parts beyond the image edge repeat the edge, so faces at the border keep their shape.
    """
    x, y, w, h = box
    side = max(w, h) * (1.0 + 2.0 * margin)
    cx, cy = x + w / 2.0, y + h / 2.0
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    s = max(1, int(round(side)))
    height, width = image.shape[:2]
    pad_l, pad_t = max(0, -x0), max(0, -y0)
    pad_r, pad_b = max(0, x0 + s - width), max(0, y0 + s - height)
    region = image[max(0, y0):min(height, y0 + s), max(0, x0):min(width, x0 + s)]
    if pad_l or pad_t or pad_r or pad_b:
        region = cv2.copyMakeBorder(region, pad_t, pad_b, pad_l, pad_r, cv2.BORDER_REPLICATE)
    interpolation = cv2.INTER_AREA if s > size else cv2.INTER_LINEAR
    return cv2.resize(region, (size, size), interpolation=interpolation)


def check_folders(raw_dir: Path, out_dir: Path) -> None:
    """Refuse a missing RAW_DIR, an OUT_DIR inside (or equal to, or containing) it, or a non-empty OUT_DIR."""
    if not raw_dir.is_dir():
        raise DatasetError(f"{raw_dir}: not a folder. Give a folder with one sub-folder of photos per class.")
    raw, out = raw_dir.resolve(), out_dir.resolve()
    if out == raw or raw in out.parents:
        raise OutputError(f"{out_dir}: is inside the raw photo folder {raw_dir}; choose an output folder "
                          "outside it (the raw photos are never written to).")
    if out in raw.parents:
        raise OutputError(f"{out_dir}: contains the raw photo folder; choose a new, empty output folder.")
    if out_dir.exists():
        if not out_dir.is_dir():
            raise OutputError(f"{out_dir}: exists and is not a folder.")
        if any(out_dir.iterdir()):
            raise OutputError(f"{out_dir}: is not empty; choose a new or empty output folder (nothing was "
                              "overwritten).")


def _scan(raw_dir: Path, result: PreprocessResult) -> dict[str, list[Path]]:
    classes: dict[str, list[Path]] = {}
    for entry in sorted(raw_dir.iterdir()):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            result.ignored.append(entry)
            continue
        files = sorted(p for p in entry.rglob("*") if p.is_file() and not p.name.startswith("."))
        images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
        result.ignored.extend(p for p in files if p.suffix.lower() not in IMAGE_EXTENSIONS)
        if images:
            classes[entry.name] = images
        else:
            result.empty_classes.append(entry.name)
    if not classes:
        raise DatasetError(f"{raw_dir}: no class sub-folders with photos ({', '.join(IMAGE_EXTENSIONS)}). "
                           "Put each class's photos in a folder named after it.")
    return classes


def _write_png(path: Path, image: np.ndarray) -> None:
    ok, encoded = cv2.imencode(".png", image)
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 image
        raise OutputError(f"{path}: OpenCV could not encode the crop.")
    path.write_bytes(encoded.tobytes())


def _csv_text(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def preprocess_folder(
    raw_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    size: int = 48,
    detector: str = "hog",
    grey: bool = True,
    margin: float = 0.2,
    align: bool = False,
    progress: Callable[[int, int, Path], None] | None = None,
) -> PreprocessResult:
    """Crop every face of every photo under ``raw_dir``'s class folders into ``out_dir`` (see module doc).

    Raises DatasetError / OutputError / DetectorError for problems found before any work (bad folders, an
    unknown detector) and DatasetError when no photo had a face; per-photo problems are collected in the
    result instead. ``progress(done, total, photo)`` is called after each photo.
    """
    from app.core.images import read_image
    from app.core.recognition.detection import align_face, create_detector

    raw, out = Path(raw_dir), Path(out_dir)
    if size < 8:
        raise DatasetError(f"--size {size}: crops must be at least 8 pixels.")
    if not 0.0 <= margin <= 1.0:
        raise DatasetError(f"--margin {margin}: use a fraction of the face box between 0 and 1 (0.2 = 20 %).")
    check_folders(raw, out)
    face_detector = create_detector(detector)
    result = PreprocessResult(out_dir=out)
    classes = _scan(raw, result)
    total = sum(len(files) for files in classes.values())

    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir()
    except OSError as exc:
        raise OutputError(f"{out}: cannot create the output folder ({exc}).") from exc
    done = 0
    try:
        for label, files in classes.items():
            (staging / label).mkdir()
            result.photos[label] = 0
            used: set[str] = set()
            for photo in files:
                done += 1
                try:
                    image = read_image(photo)
                except ImageReadError as exc:
                    result.unreadable.append((photo, str(exc)))
                    logger.warning("skipped unreadable file: %s", exc)
                    continue
                result.photos[label] += 1
                detections = face_detector.detect(image)
                if not detections:
                    result.no_face.append(photo)
                    logger.info("no face found in %s", photo)
                stem = "_".join(photo.relative_to(raw / label).with_suffix("").parts)
                if stem in used:  # "a.jpg" and "a.png" in one folder
                    stem = f"{stem}-{photo.suffix.lstrip('.').lower()}"
                used.add(stem)
                for i, detection in enumerate(detections):
                    crop = (align_face(image, detection, size, margin) if align
                            else square_crop(image, detection.box, margin, size))
                    if grey:
                        crop = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
                    relative = f"{label}/{stem}_{i}.png"
                    _write_png(staging / relative, crop)
                    result.samples.append((relative, label))
                if progress is not None:
                    progress(done, total, photo)
        if not result.samples:
            raise DatasetError(f"{raw}: no face found in any of {total} file(s) with the {detector} "
                               "detector; nothing written. Try another --detector (haar, cnn).")
        description = _csv_text(("path", "label"), result.samples)
        (staging / DESCRIPTION_NAME).write_text(description, encoding="utf-8")
        problems = [(str(p), "no face found") for p in result.no_face]
        problems += [(str(p), reason) for p, reason in result.unreadable]
        if problems:
            (staging / PROBLEMS_NAME).write_text(_csv_text(("file", "problem"), problems), encoding="utf-8")
        if out.exists():
            out.rmdir()  # checked empty above
        os.replace(staging, out)
    except OSError as exc:
        raise OutputError(f"{out}: could not write the data set ({exc}).") from exc
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    logger.info("wrote %d face crops from %d photos to %s", len(result.samples), done, out)
    return result
