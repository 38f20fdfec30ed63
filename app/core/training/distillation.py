"""Distillation targets (``fer-studio train --distill-from TEACHER``): a larger model teaches a small one.

The teacher scores every training image once before training, with its own test-time augmentation (ten crops
for a crop-trained teacher) or at least a flip, and its calibrated probabilities; each training target is then
a blend of the one-hot label and the teacher's probabilities. The student learns from the teacher's view of
which expressions look alike (fear and surprise, sad and neutral) as well as from the label. Scoring once
keeps each training step as cheap as without a teacher; the flip/rotate/shift/zoom augmentation leaves an
expression what it is, so the clean image's probabilities stand for its augmented views.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from app.core.errors import ModelLoadError
from app.core.labels import match_labels


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
