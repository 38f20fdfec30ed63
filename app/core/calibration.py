"""Honest confidence: temperature scaling, expected calibration error and the reliability plot.

A network trained with cross-entropy is usually over-confident: among faces it labels with 90%, fewer
than 90% are right. Temperature scaling (Guo et al. 2017) fits one number T on held-out data (FER2013's
PublicTest, the selection split) so that ``softmax(log(p) / T)`` minimises the negative log-likelihood;
the top label never changes. The expected calibration error (ECE) is the gap between confidence and
accuracy, averaged over confidence bins weighted by how many faces fall in each.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from app.core.errors import OutputError
from app.core.files import atomic_write_bytes
from app.core.recognition.classifier import apply_temperature

logger = logging.getLogger(__name__)

BINS = 15


def negative_log_likelihood(probabilities: np.ndarray, y_true: np.ndarray, temperature: float = 1.0) -> float:
    p = apply_temperature(probabilities, temperature)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y_true)), y_true], 1e-12, 1.0))))


def fit_temperature(probabilities: np.ndarray, y_true: np.ndarray) -> float:
    """The T in [0.05, 20] minimising the NLL of ``softmax(log(p) / T)`` (golden-section search on log T)."""
    y = np.asarray(y_true, np.int64)
    if len(y) == 0:
        raise ValueError("fitting a temperature needs labelled samples")
    lo, hi = np.log(0.05), np.log(20.0)
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = (negative_log_likelihood(probabilities, y, float(np.exp(v))) for v in (a, b))
    for _ in range(60):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = negative_log_likelihood(probabilities, y, float(np.exp(a)))
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = negative_log_likelihood(probabilities, y, float(np.exp(b)))
    return float(np.exp((lo + hi) / 2.0))


@dataclass(frozen=True)
class Reliability:
    """Per confidence bin: how many faces, their mean confidence and their accuracy; plus the ECE."""

    edges: tuple[float, ...]
    counts: tuple[int, ...]
    confidence: tuple[float, ...]
    accuracy: tuple[float, ...]
    ece: float


def reliability(probabilities: np.ndarray, y_true: np.ndarray, bins: int = BINS) -> Reliability:
    """Confidence-binned accuracy and the expected calibration error of (N, K) probabilities."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(y_true)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    conf_sum = np.bincount(which, weights=confidence, minlength=bins)
    acc_sum = np.bincount(which, weights=correct.astype(np.float64), minlength=bins)
    mean_conf = np.divide(conf_sum, counts, out=np.zeros(bins), where=counts > 0)
    mean_acc = np.divide(acc_sum, counts, out=np.zeros(bins), where=counts > 0)
    ece = float(np.sum(counts * np.abs(mean_acc - mean_conf)) / max(1, len(confidence)))
    return Reliability(tuple(edges.tolist()), tuple(int(c) for c in counts), tuple(mean_conf.tolist()),
                       tuple(mean_acc.tolist()), ece)


@dataclass(frozen=True)
class CalibrationReport:
    """What calibrating a model on one split did."""

    temperature: float
    ece_before: float
    ece_after: float
    nll_before: float
    nll_after: float
    samples: int
    before: Reliability
    after: Reliability

    def to_dict(self) -> dict:
        return asdict(self)


def calibrate(probabilities: np.ndarray, y_true: np.ndarray) -> CalibrationReport:
    """Fit T on uncalibrated ``probabilities`` and measure ECE / NLL before and after."""
    y = np.asarray(y_true, np.int64)
    temperature = fit_temperature(probabilities, y)
    after = apply_temperature(probabilities, temperature)
    return CalibrationReport(temperature, reliability(probabilities, y).ece, reliability(after, y).ece,
                             negative_log_likelihood(probabilities, y), negative_log_likelihood(after, y),
                             len(y), reliability(probabilities, y), reliability(after, y))


def render_reliability(report: CalibrationReport, title: str = "") -> np.ndarray:
    """A BGR image of the reliability diagram, before (grey) and after (blue) calibration."""
    import cv2

    size, pad = 420, 50
    image = np.full((size + 2 * pad, size + 2 * pad, 3), 255, np.uint8)
    x0, y0 = pad, pad + size

    def point(conf: float, acc: float) -> tuple[int, int]:
        return int(x0 + conf * size), int(y0 - acc * size)

    cv2.rectangle(image, (x0, pad), (x0 + size, y0), (0, 0, 0), 1)
    cv2.line(image, point(0, 0), point(1, 1), (160, 160, 160), 1, cv2.LINE_AA)
    for colour, rel, offset in (((170, 170, 170), report.before, -3), ((200, 90, 20), report.after, 3)):
        width = size / (len(rel.counts) * 2.6)
        for lo, hi, count, acc in zip(rel.edges[:-1], rel.edges[1:], rel.counts, rel.accuracy):
            if count == 0:
                continue
            centre = x0 + (lo + hi) / 2 * size + offset * width / 3
            cv2.rectangle(image, (int(centre - width / 2), int(y0 - acc * size)), (int(centre + width / 2), y0),
                          colour, -1)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for tick in (0.0, 0.5, 1.0):
        cv2.putText(image, f"{tick:.1f}", (int(x0 + tick * size) - 10, y0 + 18), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(image, f"{tick:.1f}", (x0 - 32, int(y0 - tick * size) + 4), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(image, "confidence", (x0 + size // 2 - 40, y0 + 38), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(image, "accuracy", (4, pad - 12), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(image, f"before: ECE {report.ece_before:.3f}", (x0 + 8, pad + 18), font, 0.45, (120, 120, 120), 1,
                cv2.LINE_AA)
    cv2.putText(image, f"after (T={report.temperature:.2f}): ECE {report.ece_after:.3f}", (x0 + 8, pad + 38), font,
                0.45, (200, 90, 20), 1, cv2.LINE_AA)
    if title:
        cv2.putText(image, title[:80], (8, 20), font, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
    return image


def write_calibration(report: CalibrationReport, out_dir: str | os.PathLike[str], stem: str = "calibration",
                      title: str = "") -> tuple[Path, Path]:
    """``<stem>.json`` and ``<stem>_reliability.png`` in ``out_dir`` (atomic writes)."""
    import cv2

    folder = Path(out_dir)
    json_path, png_path = folder / f"{stem}.json", folder / f"{stem}_reliability.png"
    atomic_write_bytes(json_path, (json.dumps(report.to_dict(), indent=2) + "\n").encode("utf-8"), "the calibration")
    ok, encoded = cv2.imencode(".png", render_reliability(report, title))
    if not ok:  # pragma: no cover - OpenCV always encodes a uint8 BGR image
        raise OutputError(f"{png_path}: could not encode the reliability plot.")
    atomic_write_bytes(png_path, encoded.tobytes(), "the reliability plot")
    return json_path, png_path


def store_temperature(model_path: str | os.PathLike[str], temperature: float, tta: str,
                      calibration: dict | None = None) -> None:
    """Record the fitted temperature (and the TTA it was fitted with) in a model file's metadata, in place
    and atomically (model_io.update_metadata)."""
    from app.core.model_io import read_spec, update_metadata

    path = Path(model_path)
    spec = read_spec(path)
    if spec is None:
        raise OutputError(f"{path}: has no FER Studio metadata to add the temperature to; export it first.")
    info = dict(spec.info)
    if calibration is not None:
        info["calibration"] = calibration
    update_metadata(path, replace(spec, temperature=float(temperature), tta=tta, info=info))
    logger.info("%s: temperature %.3f (%s TTA) recorded", path, temperature, tta)
