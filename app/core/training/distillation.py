"""Distillation targets (``fer-studio train --distill-from TEACHER``): a larger model teaches a small one.

The teacher scores every training image once before training, with its own test-time augmentation (ten crops
for a crop-trained teacher) or at least a flip, and its calibrated probabilities; each training target is then
a blend of the one-hot label and the teacher's probabilities. The student learns from the teacher's view of
which expressions look alike (fear and surprise, sad and neutral) as well as from the label. Scoring once
keeps each training step as cheap as without a teacher; the flip/rotate/shift/zoom augmentation leaves an
expression what it is, so the clean image's probabilities stand for its augmented views.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import zipfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from app.core.errors import ModelLoadError, OutputError
from app.core.files import atomic_write_bytes
from app.core.labels import match_labels

logger = logging.getLogger(__name__)

#: The teacher's targets, kept in the run folder so that --resume does not score the training set again
#: (ten crops of the bundled photo ensemble over FER2013's 28,709 images: under 10 minutes on 2 cores in bfloat16).
TARGETS_NAME = "teacher_targets.npz"

#: Environment variable naming the folder where targets are also kept for other runs (another student, seed
#: or schedule with the same teacher and data); default $XDG_CACHE_HOME/fer-studio or ~/.cache/fer-studio.
CACHE_ENV = "FER_STUDIO_CACHE"


def teacher_columns(teacher_labels: Sequence[str], data_labels: Sequence[str], teacher_name: str) -> list[int]:
    """For each data-set class, the index of the teacher's output with the same name; every class needs one."""
    matches = match_labels(data_labels, teacher_labels)
    missing = [name for name in data_labels if matches[name] is None]
    if missing:
        raise ModelLoadError(
            f"{teacher_name}: cannot teach this data set: the teacher has no output for {', '.join(missing)} "
            f"(its labels: {', '.join(teacher_labels)}).")
    return [int(matches[name]) for name in data_labels]  # type: ignore[arg-type]


def teacher_tta(teacher: Any) -> str:
    """The test-time augmentation a teacher scores with: its own (ten-crop for a crop-trained one), at least a
    flip."""
    return teacher.spec.tta if teacher.spec.tta != "none" else "flip"


def distillation_targets(teacher: Any, images: np.ndarray, labels: np.ndarray, data_labels: Sequence[str],
                         weight: float, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """(N, K) float32 training targets: ``(1 - weight) * one_hot(labels) + weight * teacher probabilities``.

    ``teacher`` is a LoadedModel, scored through the app's classifier with its own TTA and temperature; its
    outputs are re-ordered to ``data_labels`` by name and renormalised over
    those classes (a 7-class teacher can teach a 3-class set).
    """
    if not 0.0 < weight <= 1.0:
        raise ValueError(f"the teacher's weight must be in (0, 1], not {weight}")
    from app.core.evaluation import predict_array

    name = teacher.path.name if teacher.path is not None else "teacher"
    columns = teacher_columns(teacher.spec.labels, data_labels, name)
    # The teacher's own test-time augmentation (ten-crop for a crop-trained teacher), at least a flip, and
    # its calibrated probabilities: honest soft targets.
    scores = predict_array(teacher, images, tta=teacher_tta(teacher), progress=progress)[:, columns]
    scores /= np.maximum(scores.sum(axis=1, keepdims=True), 1e-12)
    one_hot = np.eye(len(data_labels), dtype=np.float32)[labels]
    return ((1.0 - weight) * one_hot + weight * scores).astype(np.float32)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def targets_key(teacher: Any, images: np.ndarray, labels: np.ndarray, data_labels: Sequence[str],
                weight: float) -> dict[str, Any]:
    """What the targets depend on: the teacher file's bytes, its TTA, the training images and labels in
    order, the data set's classes and the teacher's weight."""
    data = hashlib.sha256(np.ascontiguousarray(images).tobytes())
    data.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    return {"teacher_sha256": _sha256_file(Path(teacher.path)) if teacher.path is not None else None,
            "tta": teacher_tta(teacher), "data_sha256": data.hexdigest(), "samples": int(len(labels)),
            "labels": list(data_labels), "weight": float(weight)}


def shared_cache_folder() -> Path:
    """Where teacher targets are kept for other runs: ``$FER_STUDIO_CACHE/teacher-targets``, else
    ``$XDG_CACHE_HOME/fer-studio/teacher-targets``, else ``~/.cache/fer-studio/teacher-targets``. Deleting it
    is safe: targets are scored again when missing."""
    root = os.environ.get(CACHE_ENV)
    if not root:
        root = str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fer-studio")
    return Path(root).expanduser() / "teacher-targets"


def shared_cache_path(key: dict[str, Any]) -> Path:
    """The shared cache's file for ``key`` (named by the hash of the whole key)."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()[:24]
    return shared_cache_folder() / f"{digest}.npz"


def _read_targets(path: Path, key: dict[str, Any]) -> np.ndarray | None:
    if key.get("teacher_sha256") is None or not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as saved:
            if json.loads(str(saved["key"])) != key:
                logger.info("%s: for another teacher or data; scoring again", path)
                return None
            targets = np.asarray(saved["targets"], np.float32)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        logger.warning("%s: unreadable (%s); scoring again", path, exc)
        return None
    if targets.shape != (key["samples"], len(key["labels"])):
        return None
    return targets


def load_cached_targets(folder: Path, key: dict[str, Any]) -> np.ndarray | None:
    """The targets saved in ``folder`` for exactly ``key``; None when there are none, or they are for
    another teacher or data, or unreadable (then they are scored again and the file replaced)."""
    return _read_targets(Path(folder) / TARGETS_NAME, key)


def find_cached_targets(folder: Path, key: dict[str, Any]) -> tuple[np.ndarray | None, str | None]:
    """(targets, where): the run folder's own targets for ``key`` ("run"), else the shared cache's, saved by
    another run with the same teacher, data and weight ("shared"), else (None, None)."""
    targets = load_cached_targets(folder, key)
    if targets is not None:
        return targets, "run"
    if key.get("teacher_sha256") is None:
        return None, None
    targets = _read_targets(shared_cache_path(key), key)
    return (targets, "shared") if targets is not None else (None, None)


def save_cached_targets(folder: Path, key: dict[str, Any], targets: np.ndarray, shared: bool = True) -> Path:
    """Write ``targets`` and their key to ``folder`` (atomically) and, unless ``shared`` is False, to the shared
    cache for other runs; a shared cache that cannot be written only logs a warning."""
    buffer = io.BytesIO()
    np.savez(buffer, key=np.array(json.dumps(key, sort_keys=True)), targets=np.asarray(targets, np.float32))
    data = buffer.getvalue()
    path = atomic_write_bytes(Path(folder) / TARGETS_NAME, data, "the teacher's targets")
    if shared and key.get("teacher_sha256") is not None:
        try:
            atomic_write_bytes(shared_cache_path(key), data, "the teacher's targets")
        except OutputError as exc:
            logger.warning("not kept for other runs: %s", exc)
    return path
