"""Evaluation metrics against hand-computed values, the confusion PNG, the JSON report, batched inference."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from app.core.evaluation import evaluate_predictions, predict_array, save_confusion_png, write_report
from app.core.labels import FER2013_LABELS

# Three classes, ten samples. Confusion (rows true, columns predicted):
#   a: [2, 1, 1]   b: [1, 2, 0]   c: [0, 1, 2]
Y_TRUE = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
Y_PRED = np.array([0, 0, 1, 2, 1, 1, 0, 2, 2, 1])


def test_metrics_match_hand_computed_values():
    report = evaluate_predictions(Y_TRUE, Y_PRED, ["a", "b", "c"])
    assert report.confusion.tolist() == [[2, 1, 1], [1, 2, 0], [0, 1, 2]]
    assert report.accuracy == pytest.approx(0.6)
    # precision = TP / predicted: a 2/3, b 2/4, c 2/3; recall = TP / support: a 2/4, b 2/3, c 2/3
    expected = {"a": (2 / 3, 1 / 2, 4 / 7, 4), "b": (1 / 2, 2 / 3, 4 / 7, 3), "c": (2 / 3, 2 / 3, 2 / 3, 3)}
    for label, (p, r, f1, support) in expected.items():
        m = report.per_class[label]
        assert (m.precision, m.recall, m.f1) == pytest.approx((p, r, f1))
        assert m.support == support
    assert report.macro_f1 == pytest.approx(38 / 63)  # (4/7 + 4/7 + 2/3) / 3
    assert report.absent == ()


def test_scores_are_reduced_by_argmax():
    scores = np.eye(3, dtype=np.float32)[Y_PRED] * 0.5 + 0.1
    by_scores = evaluate_predictions(Y_TRUE, scores, ["a", "b", "c"])
    by_index = evaluate_predictions(Y_TRUE, Y_PRED, ["a", "b", "c"])
    assert by_scores.confusion.tolist() == by_index.confusion.tolist()


def test_classes_without_samples_are_excluded_from_macro_f1():
    # Model has four labels; data has samples of a and b only; one sample is wrongly predicted as d.
    report = evaluate_predictions([0, 0, 1, 1], [0, 3, 1, 1], ["a", "b", "c", "d"])
    assert report.absent == ("c", "d")
    assert report.accuracy == pytest.approx(0.75)
    assert report.per_class["a"].f1 == pytest.approx(2 / 3)  # P 1/1, R 1/2
    assert report.per_class["b"].f1 == pytest.approx(1.0)
    assert report.per_class["d"].support == 0 and report.per_class["d"].precision == 0.0
    assert report.macro_f1 == pytest.approx((2 / 3 + 1.0) / 2)
    table = report.format_table()
    assert "no samples of c, d" in table and "excluded from macro-F1" in table
    assert report.to_dict()["macro_f1_over"] == ["a", "b"]


@pytest.mark.parametrize("y_true, pred, labels", [
    ([0, 1], [0], ["a", "b"]),              # length mismatch
    ([0, 2], [0, 1], ["a", "b"]),           # true index out of range
    ([0, 1], np.zeros((2, 3)), ["a", "b"]),  # score columns != labels
    ([], [], ["a", "b"]),                   # nothing to score
])
def test_bad_arguments_raise(y_true, pred, labels):
    with pytest.raises(ValueError):
        evaluate_predictions(np.asarray(y_true, int), np.asarray(pred), labels)


def test_report_files_are_written_and_valid(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, 300)
    pred = np.where(rng.random(300) < 0.6, y, rng.integers(0, 7, 300))
    report = evaluate_predictions(y, pred, FER2013_LABELS, meta={"model": "m.h5", "split": "PrivateTest"})
    json_path, png_path = write_report(report, tmp_path / "out")

    data = json.loads(json_path.read_text())
    assert data["accuracy"] == pytest.approx(report.accuracy)
    assert data["macro_f1"] == pytest.approx(report.macro_f1)
    assert data["labels"] == list(FER2013_LABELS)
    assert np.array(data["confusion_matrix"]).sum() == 300
    assert data["meta"]["split"] == "PrivateTest"

    image = cv2.imread(str(png_path))
    assert image is not None and image.ndim == 3
    assert image.shape[0] > 7 * 50 and image.shape[1] > 7 * 50
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 20  # cells, text and shades, not a blank page
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [json_path.name, png_path.name]


def test_confusion_png_with_long_labels_and_counts(tmp_path):
    report = evaluate_predictions([0, 1, 1, 0], [0, 1, 0, 0], ["a_very_long_folder_name", "short"])
    path = save_confusion_png(report, tmp_path / "cm.png", normalize=False)
    assert cv2.imread(str(path)) is not None


def test_predict_array_batches_and_flip_tta(tiny_model_path):
    from app.core.model_io import load_model

    loaded = load_model(tiny_model_path)
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (7, 48, 48, 1), dtype=np.uint8)
    direct = loaded.model.predict_on_batch(x.astype(np.float32) / 127.5 - 1.0)

    # float32: the reference above is the float32 model (auto would run a conv net in bfloat16 on AMX CPUs)
    probs = predict_array(loaded, x, batch_size=3, precision="float32")
    assert probs.shape == (7, 7)
    np.testing.assert_allclose(probs, direct, rtol=1e-4, atol=1e-5)

    # (N, H, W) without a channel axis is accepted too.
    np.testing.assert_allclose(predict_array(loaded, x[..., 0], batch_size=4, precision="float32"), direct,
                               rtol=1e-4, atol=1e-5)

    flipped = loaded.model.predict_on_batch(x[:, :, ::-1].astype(np.float32) / 127.5 - 1.0)
    tta = predict_array(loaded, x, batch_size=4, tta=True, precision="float32")
    np.testing.assert_allclose(tta, (direct + flipped) / 2, rtol=1e-4, atol=1e-5)
