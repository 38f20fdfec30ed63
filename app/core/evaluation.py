"""Scoring a model on a labelled data set: accuracy, macro-F1, per-class report and confusion matrix.

``evaluate_predictions`` is pure numpy (no Keras), so training, the ``evaluate`` command and the GUI all
produce the same report. ``predict_array`` runs a loaded model over uint8 images in batches, and
``write_report`` saves the report as JSON plus a confusion-matrix PNG (drawn with numpy and OpenCV only).

Conventions: confusion rows are true classes, columns predicted classes, both in the model's label order.
A class with no samples in the data (a 7-class model scored on a set with fewer classes) keeps its row
(all zeros) but is left out of macro-F1, and the report says so; its precision still counts the samples
wrongly predicted as it.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from app.core.errors import OutputError
from app.core.files import atomic_write_bytes

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClassMetrics:
    """Precision, recall and F1 of one class (0.0 where undefined), and how many true samples it has."""

    precision: float
    recall: float
    f1: float
    support: int

    def to_dict(self) -> dict[str, float | int]:
        return {"precision": self.precision, "recall": self.recall, "f1": self.f1, "support": self.support}


@dataclass
class EvaluationReport:
    """The scores of one model on one data split."""

    labels: tuple[str, ...]
    confusion: np.ndarray  # (K, K) int64; rows = true class, columns = predicted class
    accuracy: float
    macro_f1: float
    per_class: dict[str, ClassMetrics]
    #: Labels with no true sample in the data: shown, but excluded from macro-F1.
    absent: tuple[str, ...] = ()
    #: Free-form facts about what was scored (model, data, split, skipped folders...), JSON-serialisable.
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_samples(self) -> int:
        return int(self.confusion.sum())

    @property
    def num_correct(self) -> int:
        return int(np.trace(self.confusion))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with ``accuracy`` and ``macro_f1`` at top level."""
        return {
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "num_samples": self.num_samples,
            "num_correct": self.num_correct,
            "labels": list(self.labels),
            "macro_f1_over": [label for label in self.labels if label not in self.absent],
            "absent_classes": list(self.absent),
            "per_class": {label: m.to_dict() for label, m in self.per_class.items()},
            "confusion_matrix": self.confusion.astype(int).tolist(),
            "meta": dict(self.meta),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    def format_table(self) -> str:
        """A readable text report: per-class table, then accuracy and macro-F1."""
        width = max([len("class")] + [len(label) for label in self.labels])
        lines = [f"{'class':<{width}}  precision  recall      f1  support"]
        for label in self.labels:
            m = self.per_class[label]
            note = "  (no samples)" if label in self.absent else ""
            lines.append(f"{label:<{width}}  {m.precision:9.4f}  {m.recall:6.4f}  {m.f1:6.4f}  "
                         f"{m.support:7d}{note}")
        lines.append("")
        lines.append(f"accuracy  {self.accuracy:.4f}  ({self.num_correct}/{self.num_samples})")
        present = len(self.labels) - len(self.absent)
        lines.append(f"macro-F1  {self.macro_f1:.4f}  (mean over {present} of {len(self.labels)} classes)")
        if self.absent:
            lines.append(f"note: no samples of {', '.join(self.absent)} in the data; "
                         "excluded from macro-F1")
        return "\n".join(lines)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros_like(num, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def evaluate_predictions(
    y_true: np.ndarray,
    probs_or_pred: np.ndarray,
    labels: Sequence[str],
    *,
    meta: dict[str, Any] | None = None,
) -> EvaluationReport:
    """Score predictions against true class indices.

    ``probs_or_pred`` is either (N, K) scores (argmax is taken) or (N,) predicted class indices;
    ``y_true`` is (N,) indices into ``labels``. Raises ValueError on mismatched shapes or out-of-range
    indices (a programming error, not a user one).
    """
    labels = tuple(str(x) for x in labels)
    k = len(labels)
    y_true = np.asarray(y_true).reshape(-1)
    pred = np.asarray(probs_or_pred)
    if pred.ndim == 2:
        if pred.shape[1] != k:
            raise ValueError(f"scores have {pred.shape[1]} columns but there are {k} labels")
        pred = pred.argmax(axis=1)
    elif pred.ndim != 1:
        raise ValueError(f"expected (N, K) scores or (N,) class indices, got shape {pred.shape}")
    if len(pred) != len(y_true):
        raise ValueError(f"{len(y_true)} true labels but {len(pred)} predictions")
    if len(y_true) == 0:
        raise ValueError("nothing to evaluate: no samples")
    y_true = y_true.astype(np.int64)
    pred = pred.astype(np.int64)
    for name, arr in (("true label", y_true), ("prediction", pred)):
        if arr.min() < 0 or arr.max() >= k:
            raise ValueError(f"{name} index out of range 0..{k - 1}: {int(arr.min())}..{int(arr.max())}")

    confusion = np.bincount(y_true * k + pred, minlength=k * k).reshape(k, k).astype(np.int64)
    tp = np.diag(confusion).astype(np.float64)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    precision = _safe_div(tp, predicted.astype(np.float64))
    recall = _safe_div(tp, support.astype(np.float64))
    f1 = _safe_div(2 * precision * recall, precision + recall)
    present = support > 0
    per_class = {
        label: ClassMetrics(float(precision[i]), float(recall[i]), float(f1[i]), int(support[i]))
        for i, label in enumerate(labels)
    }
    absent = tuple(label for i, label in enumerate(labels) if not present[i])
    if absent:
        logger.info("no samples of %s; excluded from macro-F1", ", ".join(absent))
    return EvaluationReport(
        labels=labels,
        confusion=confusion,
        accuracy=float(tp.sum() / len(y_true)),
        macro_f1=float(f1[present].mean()),
        per_class=per_class,
        absent=absent,
        meta=dict(meta or {}),
    )


@dataclass(frozen=True)
class LabelAlignment:
    """How a data set's class names map onto a model's labels."""

    mapping: dict[str, int | None]  # data-set class name -> model label index, or None
    unmatched: tuple[str, ...]  # data-set classes that match no model label (their samples are skipped)
    skipped_counts: dict[str, int] = field(default_factory=dict)  # unmatched class -> its samples, when known

    @property
    def matched(self) -> tuple[str, ...]:
        return tuple(name for name, idx in self.mapping.items() if idx is not None)


def align_labels(
    y_data: np.ndarray, data_labels: Sequence[str], model_labels: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, LabelAlignment]:
    """Re-index data-set labels into the model's label order (via ``labels.match_labels``).

    Returns (keep mask over the samples, model-label indices of the kept samples, the alignment). Classes
    matching no model label are dropped; raises DatasetError when none matches at all.
    """
    from app.core.errors import DatasetError
    from app.core.labels import match_labels

    mapping = match_labels(list(data_labels), list(model_labels))
    unmatched = tuple(name for name, idx in mapping.items() if idx is None)
    alignment = LabelAlignment(mapping=mapping, unmatched=unmatched)
    if not alignment.matched:
        raise DatasetError(
            f"none of the data set's classes ({', '.join(data_labels)}) matches the model's labels "
            f"({', '.join(model_labels)}). Rename the class folders, or give the model's labels "
            "(--labels on export).")
    lookup = np.array([-1 if mapping[name] is None else mapping[name] for name in data_labels], np.int64)
    y_model = lookup[np.asarray(y_data, np.int64)]
    keep = y_model >= 0
    return keep, y_model[keep], alignment


# ---------------------------------------------------------------------------------------------- inference


def predict_array(
    loaded_model: Any,
    x_uint8: np.ndarray,
    batch_size: int = 256,
    tta: bool | str = False,
    progress: Callable[[int, int], None] | None = None,
    calibrated: bool = True,
    precision: str = "auto",
) -> np.ndarray:
    """Run a ``LoadedModel`` over uint8 data-set images (grey or RGB) in batches; returns (N, K) float32
    probabilities.

    This is the app's own path: ``EmotionClassifier`` resizes, crops, normalises and applies the test-time
    augmentation (``tta``: False/"none", True/"flip", "crops") and the model's temperature (unless
    ``calibrated`` is False), at the app's compute ``precision`` (auto: see recognition/precision.py).
    ``progress(done, total)`` is called after each batch.
    """
    from app.core.recognition.classifier import EmotionClassifier

    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    x = np.asarray(x_uint8)
    if x.ndim not in (3, 4):
        raise ValueError(f"expected images shaped (N,H,W) or (N,H,W,C), got {x.shape}")
    classifier = EmotionClassifier(loaded_model, tta=tta, warm_up=False, calibrated=calibrated,
                                   precision=precision)
    n = len(x)
    out = np.zeros((n, loaded_model.spec.num_classes), np.float32)
    for start in range(0, n, batch_size):
        chunk = x[start:start + batch_size]
        out[start:start + len(chunk)] = classifier.predict(list(chunk), rgb=True)
        if progress is not None:
            progress(min(start + batch_size, n), n)
    return out


# ---------------------------------------------------------------------------------------------- writing


def save_confusion_png(
    report: EvaluationReport, path: str | os.PathLike[str], normalize: bool = True
) -> Path:
    """Draw the confusion matrix as a PNG (atomic write) and return its path.

    With ``normalize`` cells are coloured and labelled by the fraction of each true class (row), with the
    count underneath; otherwise by counts.
    """
    import cv2

    from app.core.confusion_image import render_confusion

    image = render_confusion(report.confusion, report.labels, title=_title(report), normalize=normalize)
    ok, encoded = cv2.imencode(".png", image)
    if not ok:  # pragma: no cover - OpenCV always encodes a uint8 BGR image
        raise OutputError(f"{path}: OpenCV could not encode the confusion-matrix image.")
    p = Path(path)
    atomic_write_bytes(p, encoded.tobytes(), "the confusion-matrix image")
    return p


def _title(report: EvaluationReport) -> str:
    where = " ".join(str(report.meta[k]) for k in ("model", "split") if report.meta.get(k))
    head = f"{where}: " if where else ""
    return (f"{head}accuracy {100 * report.accuracy:.2f}%  macro-F1 {report.macro_f1:.3f}  "
            f"n={report.num_samples}")


def write_report(report: EvaluationReport, out_dir: str | os.PathLike[str],
                 stem: str = "evaluation") -> tuple[Path, Path]:
    """Write ``<stem>.json`` and ``<stem>_confusion.png`` into ``out_dir``; returns both paths."""
    folder = Path(out_dir)
    json_path = folder / f"{stem}.json"
    png_path = folder / f"{stem}_confusion.png"
    atomic_write_bytes(json_path, (report.to_json() + "\n").encode("utf-8"), "the report")
    save_confusion_png(report, png_path)
    logger.info("wrote %s and %s", json_path, png_path)
    return json_path, png_path


def evaluate_model(
    loaded_model: Any,
    x_uint8: np.ndarray,
    y_true: np.ndarray,
    *,
    batch_size: int = 256,
    tta: bool | str = False,
    meta: dict[str, Any] | None = None,
) -> EvaluationReport:
    """``predict_array`` then ``evaluate_predictions`` against the model's own labels (y indexes them)."""
    probs = predict_array(loaded_model, x_uint8, batch_size=batch_size, tta=tta)
    return evaluate_predictions(y_true, probs, loaded_model.spec.labels, meta=meta)
