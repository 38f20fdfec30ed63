"""Data sets for training and evaluation: FER2013 CSV (plain or .gz) and folder-per-class image sets.

Everything is returned as plain numpy: images uint8 (N, H, W, C) and labels int32 (N,), plus the label
names. FER2013 keeps its own split (Training / PublicTest / PrivateTest); a folder set either has explicit
split folders (``train/`` and ``val/`` or ``test/``) or gets a deterministic stratified validation split.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from app.core.errors import DatasetError
from app.core.labels import FER2013_LABELS, IMAGE_EXTENSIONS

logger = logging.getLogger(__name__)

FER2013_SPLITS: tuple[str, ...] = ("Training", "PublicTest", "PrivateTest")
FER2013_COLUMNS: tuple[str, ...] = ("emotion", "pixels", "Usage")
FER_SIDE = 48
_TRAIN_DIRS = ("train", "training")
_VAL_DIRS = ("val", "valid", "validation")
_TEST_DIRS = ("test", "testing")


@dataclass
class Split:
    """One split of a data set: images uint8 (N, H, W, C), labels int32 (N,)."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def counts(self, num_classes: int) -> list[int]:
        return np.bincount(self.labels, minlength=num_classes).astype(int).tolist()


@dataclass
class Dataset:
    """A labelled data set with named splits ("train", "val", optionally "test")."""

    labels: tuple[str, ...]
    splits: dict[str, Split]
    kind: str  # "fer2013" or "folder"
    source: Path
    fingerprint: str = ""
    #: Which original split names became train / val / test (FER2013: Training / PublicTest / PrivateTest).
    split_names: dict[str, str] = field(default_factory=dict)


def is_fer2013_csv(path: str | os.PathLike[str]) -> bool:
    name = Path(path).name.lower()
    return name.endswith(".csv") or name.endswith(".csv.gz")


def open_text(path: Path) -> io.TextIOBase:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", newline="")  # type: ignore[return-value]
    return open(path, encoding="utf-8", newline="")


def _read_fer_lines(path: Path) -> tuple[list[str], list[str]]:
    """Header-checked data lines of a FER2013 CSV; returns (header columns, lines)."""
    if not path.is_file():
        raise DatasetError(f"{path}: no such file.")
    try:
        with open_text(path) as handle:
            text = handle.read()
    except (OSError, EOFError, UnicodeDecodeError, gzip.BadGzipFile) as exc:
        raise DatasetError(f"{path}: cannot read the CSV ({exc}). Is the file complete and a (gzipped) CSV?") from exc
    lines = text.splitlines()
    if not lines:
        raise DatasetError(f"{path}: the file is empty.")
    header = next(csv.reader([lines[0]]))
    header = [h.strip() for h in header]
    missing = [c for c in FER2013_COLUMNS if c not in header]
    if missing:
        raise DatasetError(
            f"{path}: expected FER2013 columns {','.join(FER2013_COLUMNS)}, found {','.join(header) or 'none'} "
            f"(missing {', '.join(missing)}).")
    if tuple(header[:3]) != FER2013_COLUMNS:
        # Unusual column order: fall back to the csv module and re-emit lines in the standard order.
        idx = [header.index(c) for c in FER2013_COLUMNS]
        rows = csv.reader(lines[1:])
        lines = [lines[0]] + [",".join(row[i] for i in idx) for row in rows if row]
    data = [ln for ln in lines[1:] if ln.strip()]
    if not data:
        raise DatasetError(f"{path}: the CSV has a header but no rows.")
    return header, data


def _split_fer_line(line: str) -> tuple[str, str, str]:
    first, last = line.find(","), line.rfind(",")
    if first < 0 or first == last:
        raise ValueError("expected 3 columns")
    return line[:first].strip(), line[first + 1:last].strip().strip('"'), line[last + 1:].strip()


def load_fer2013(path: str | os.PathLike[str], splits: Sequence[str] | None = None) -> dict[str, Split]:
    """Read a FER2013 CSV (.csv or .csv.gz) into {Usage: Split}, images (N, 48, 48, 1) uint8.

    Every row is checked: three columns, emotion 0..6, 2,304 pixels in 0..255, a known Usage. The first
    bad row is reported with its line number.
    """
    p = Path(path)
    _, lines = _read_fer_lines(p)
    wanted = set(splits) if splits is not None else None
    emotions: list[int] = []
    usages: list[str] = []
    pixels: list[str] = []
    for number, line in enumerate(lines, start=2):
        try:
            emotion_text, pixel_text, usage = _split_fer_line(line)
        except ValueError:
            raise DatasetError(f"{p}, line {number}: expected 3 columns emotion,pixels,Usage.") from None
        if usage not in FER2013_SPLITS:
            raise DatasetError(f"{p}, line {number}: unknown Usage {usage!r}; expected one of {FER2013_SPLITS}.")
        if wanted is not None and usage not in wanted:
            continue
        if not emotion_text.isdigit() or int(emotion_text) >= len(FER2013_LABELS):
            raise DatasetError(f"{p}, line {number}: unknown emotion label {emotion_text!r}; expected 0..6.")
        count = len(pixel_text.split())
        if count != FER_SIDE * FER_SIDE:
            raise DatasetError(
                f"{p}, line {number}: {count} pixel values; a FER2013 row has {FER_SIDE * FER_SIDE} (48x48).")
        emotions.append(int(emotion_text))
        usages.append(usage)
        pixels.append(pixel_text)
    if not emotions:
        raise DatasetError(f"{p}: no rows for split(s) {', '.join(sorted(wanted or []))}.")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy warns (not raises) on a non-numeric token
        try:
            flat = np.fromstring(" ".join(pixels), dtype=np.int32, sep=" ")
        except (ValueError, DeprecationWarning) as exc:
            raise DatasetError(f"{p}: a pixels value is not a number ({exc}).") from exc
    if flat.size != len(pixels) * FER_SIDE * FER_SIDE:
        raise DatasetError(f"{p}: some pixels values are not numbers.")
    if flat.min() < 0 or flat.max() > 255:
        raise DatasetError(f"{p}: pixel values must be 0..255, found {flat.min()}..{flat.max()}.")
    images = flat.astype(np.uint8).reshape(-1, FER_SIDE, FER_SIDE, 1)
    labels = np.asarray(emotions, dtype=np.int32)
    usage_arr = np.asarray(usages)
    result: dict[str, Split] = {}
    for name in FER2013_SPLITS:
        mask = usage_arr == name
        if mask.any():
            result[name] = Split(images[mask], labels[mask])
    return result


def file_fingerprint(path: Path) -> str:
    """A short content hash of a file (or of a folder's file names and sizes), recorded in model metadata."""
    digest = hashlib.sha256()
    if path.is_file():
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    else:
        for item in sorted(path.rglob("*")):
            if item.is_file():
                digest.update(f"{item.relative_to(path)}:{item.stat().st_size}\n".encode())
    return digest.hexdigest()[:16]


# ------------------------------------------------------------------------------------------ folder sets


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _find_split_dir(root: Path, names: Sequence[str]) -> Path | None:
    for child in _class_dirs(root):
        if child.name.lower() in names:
            return child
    return None


def folder_layout(root: str | os.PathLike[str]) -> dict[str, dict[str, list[Path]]]:
    """{split: {class name: [image files]}} of a folder set; split "all" when there are no split folders."""
    path = Path(root)
    if not path.is_dir():
        raise DatasetError(f"{path}: not a folder. Choose a folder with one sub-folder per class.")
    train_dir = _find_split_dir(path, _TRAIN_DIRS)
    if train_dir is not None:
        layout = {"train": {c.name: _image_files(c) for c in _class_dirs(train_dir)}}
        for split, names in (("val", _VAL_DIRS), ("test", _TEST_DIRS)):
            found = _find_split_dir(path, names)
            if found is not None:
                layout[split] = {c.name: _image_files(c) for c in _class_dirs(found)}
    else:
        layout = {"all": {c.name: _image_files(c) for c in _class_dirs(path)}}
    first = next(iter(layout.values()))
    if not first:
        raise DatasetError(f"{path}: no class sub-folders. Put each class's images in a folder named after it.")
    if not any(first.values()):
        raise DatasetError(f"{path}: the class folders hold no images ({', '.join(IMAGE_EXTENSIONS)}).")
    return layout


def _read_face(path: Path, size: tuple[int, int], channels: int) -> np.ndarray:
    import cv2

    from app.core.images import read_image  # lazy: pulls in cv2 only when images are read

    image = read_image(path)
    if channels == 1:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    else:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    image = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    return image.reshape(size[0], size[1], channels)


def _read_files(files: list[tuple[Path, int]], size: tuple[int, int], channels: int) -> tuple[Split, list[str]]:
    from app.core.errors import ImageReadError

    images, labels, problems = [], [], []
    for file, label in files:
        try:
            images.append(_read_face(file, size, channels))
            labels.append(label)
        except ImageReadError as exc:
            problems.append(str(exc))
    array = np.stack(images) if images else np.zeros((0, size[0], size[1], channels), np.uint8)
    return Split(array, np.asarray(labels, dtype=np.int32)), problems


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val): ``fraction`` of each class to val (at least one where a class has two or more)."""
    rng = np.random.default_rng(seed)
    train_idx, val_idx = [], []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        n_val = int(round(len(idx) * fraction))
        if len(idx) >= 2:
            n_val = min(max(n_val, 1), len(idx) - 1)
        else:
            n_val = 0
        val_idx.append(idx[:n_val])
        train_idx.append(idx[n_val:])
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(val_idx))


def load_image_folder(
    root: str | os.PathLike[str],
    input_size: tuple[int, int] = (FER_SIDE, FER_SIDE),
    channels: int = 1,
    val_split: float = 0.1,
    seed: int = 1337,
) -> Dataset:
    """Load a folder-per-class set, resized to ``input_size``; unreadable images are skipped and logged."""
    path = Path(root)
    layout = folder_layout(path)
    base = layout.get("train", layout.get("all", {}))
    labels = tuple(sorted(base))
    index = {name: i for i, name in enumerate(labels)}
    splits: dict[str, Split] = {}
    problems: list[str] = []
    for split, classes in layout.items():
        unknown = sorted(set(classes) - set(index))
        if unknown:
            logger.warning("%s/%s: class folders %s are not in the training classes; skipped", path, split, unknown)
        files = [(f, index[c]) for c, fs in classes.items() if c in index for f in fs]
        splits[split], bad = _read_files(files, input_size, channels)
        problems += bad
    for problem in problems[:20]:
        logger.warning("skipped unreadable image: %s", problem)
    if "all" in splits:
        everything = splits.pop("all")
        train_idx, val_idx = stratified_split(everything.labels, val_split, seed)
        splits["train"] = Split(everything.images[train_idx], everything.labels[train_idx])
        splits["val"] = Split(everything.images[val_idx], everything.labels[val_idx])
    elif "val" not in splits:
        train_idx, val_idx = stratified_split(splits["train"].labels, val_split, seed)
        whole = splits["train"]
        splits["train"] = Split(whole.images[train_idx], whole.labels[train_idx])
        splits["val"] = Split(whole.images[val_idx], whole.labels[val_idx])
    return Dataset(labels=labels, splits=splits, kind="folder", source=path, fingerprint=file_fingerprint(path),
                   split_names={"train": "train", "val": "val", **({"test": "test"} if "test" in splits else {})})


def load_dataset(
    path: str | os.PathLike[str],
    input_size: tuple[int, int] = (FER_SIDE, FER_SIDE),
    channels: int = 1,
    val_split: float = 0.1,
    seed: int = 1337,
) -> Dataset:
    """Load FER2013 (Training -> train, PublicTest -> val, PrivateTest -> test) or a folder set for training."""
    p = Path(path)
    if p.is_dir():
        return load_image_folder(p, input_size, channels, val_split, seed)
    if not is_fer2013_csv(p):
        raise DatasetError(f"{p}: choose a FER2013 .csv/.csv.gz file or a folder with one sub-folder per class.")
    raw = load_fer2013(p)
    if "Training" not in raw:
        raise DatasetError(f"{p}: no Training rows; training needs the Training split.")
    splits = {"train": _resize_split(raw["Training"], input_size, channels)}
    names = {"train": "Training"}
    if "PublicTest" in raw:
        splits["val"], names["val"] = _resize_split(raw["PublicTest"], input_size, channels), "PublicTest"
    else:
        train_idx, val_idx = stratified_split(splits["train"].labels, val_split, seed)
        whole = splits["train"]
        splits["train"] = Split(whole.images[train_idx], whole.labels[train_idx])
        splits["val"], names["val"] = Split(whole.images[val_idx], whole.labels[val_idx]), "Training (held out)"
    if "PrivateTest" in raw:
        splits["test"], names["test"] = _resize_split(raw["PrivateTest"], input_size, channels), "PrivateTest"
    return Dataset(labels=FER2013_LABELS, splits=splits, kind="fer2013", source=p,
                   fingerprint=file_fingerprint(p), split_names=names)


def _resize_split(split: Split, size: tuple[int, int], channels: int) -> Split:
    """FER2013 faces are 48x48 grey; resize / replicate channels for models that want something else."""
    images = split.images
    if size != (FER_SIDE, FER_SIDE):
        import cv2

        images = np.stack([cv2.resize(im, (size[1], size[0]), interpolation=cv2.INTER_LINEAR) for im in images])
        images = images.reshape(-1, size[0], size[1], 1)
    if channels == 3:
        images = np.repeat(images, 3, axis=-1)
    return Split(images, split.labels)


def load_split(
    path: str | os.PathLike[str],
    split: str,
    input_size: tuple[int, int],
    channels: int,
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """One split for evaluation: (images uint8 (N,H,W,C), labels int32, the data set's label names).

    FER2013 split names are its Usage values; a folder set takes "train", "val", "test" or "all" (every
    image, for a set with no split folders).
    """
    p = Path(path)
    if p.is_dir():
        layout = folder_layout(p)
        key = split.lower()
        if key not in layout and not (key == "all" and "all" in layout):
            raise DatasetError(f"{p}: no split {split!r}; this folder set has {', '.join(layout)}.")
        classes = layout[key]
        names = tuple(sorted(classes))
        files = [(f, i) for i, name in enumerate(names) for f in classes[name]]
        data, problems = _read_files(files, input_size, channels)
        for problem in problems[:20]:
            logger.warning("skipped unreadable image: %s", problem)
        return data.images, data.labels, names
    if split not in FER2013_SPLITS:
        raise DatasetError(f"unknown FER2013 split {split!r}; choose one of {', '.join(FER2013_SPLITS)}.")
    raw = load_fer2013(p, splits=[split])
    data = _resize_split(raw[split], input_size, channels)
    return data.images, data.labels, FER2013_LABELS
