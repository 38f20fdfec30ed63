"""EmotionClassifier: preprocessing, one batched traced call per image, TTA, logits, threads."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.core.labels import FER2013_LABELS
from app.core.model_io import LoadedModel, ModelSpec, load_model
from app.core.recognition.classifier import EmotionClassifier, as_probabilities
from tests.conftest import build_tiny_model


@pytest.fixture(scope="module")
def loaded(tiny_model_path: Path) -> LoadedModel:
    return load_model(tiny_model_path)


def _crops(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (rng.integers(30, 200), rng.integers(30, 200), 3), dtype=np.uint8)
            for _ in range(n)]


def _expected(loaded: LoadedModel, crops: list[np.ndarray]) -> np.ndarray:
    """What the model gives for the crops, computed independently of the classifier."""
    h, w = loaded.spec.input_size
    batch = []
    for crop in crops:
        grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
        interp = cv2.INTER_AREA if grey.shape[0] > h or grey.shape[1] > w else cv2.INTER_LINEAR
        batch.append(cv2.resize(grey, (w, h), interpolation=interp).astype(np.float32) / 127.5 - 1.0)
    return np.asarray(loaded.model(np.stack(batch)[..., None], training=False))


def test_predict_matches_the_model(loaded: LoadedModel) -> None:
    classifier = EmotionClassifier(loaded, precision="float32")  # the reference below computes in float32
    assert classifier.labels == FER2013_LABELS
    crops = _crops(5)
    probabilities = classifier.predict(crops)
    assert probabilities.shape == (5, 7) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(probabilities, _expected(loaded, crops), atol=1e-5)


def test_no_faces_no_call(loaded: LoadedModel) -> None:
    classifier = EmotionClassifier(loaded, warm_up=False)
    calls = []
    classifier._run = lambda batch: calls.append(batch)  # type: ignore[method-assign]
    assert classifier.predict([]).shape == (0, 7)
    assert calls == []


def test_all_faces_in_one_traced_call(loaded: LoadedModel) -> None:
    classifier = EmotionClassifier(loaded)
    real_run = classifier._run
    shapes = []

    def counting(batch):  # type: ignore[no-untyped-def]
        shapes.append(batch.shape)
        return real_run(batch)

    classifier._run = counting  # type: ignore[method-assign]
    for n in (1, 3, 8):
        classifier.predict(_crops(n, seed=n))
    assert shapes == [(1, 48, 48, 1), (3, 48, 48, 1), (8, 48, 48, 1)]
    # The fixed input signature means one trace serves every batch size.
    assert classifier._infer.experimental_get_tracing_count() == 1


def test_the_frozen_graph_is_called_through_its_flat_signature(loaded: LoadedModel, monkeypatch) -> None:
    """A frozen graph has no structured signature: trying it first raised (and caught) a TypeError that
    printed the whole batch into its message, 1 ms of an 8-face call. The classifier calls the flat
    function directly, with the same numbers."""
    from tensorflow.python.eager.polymorphic_function.concrete_function import ConcreteFunction

    classifier = EmotionClassifier(loaded, precision="float32")

    def refuse(self, args, kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("called through the structured signature")

    monkeypatch.setattr(ConcreteFunction, "_call_with_structured_signature", refuse)
    crops = _crops(8, seed=4)
    np.testing.assert_allclose(classifier.predict(crops), _expected(loaded, crops), atol=1e-5)


def test_batched_equals_one_by_one(loaded: LoadedModel) -> None:
    classifier = EmotionClassifier(loaded)
    crops = _crops(4, seed=3)
    together = classifier.predict(crops)
    alone = np.concatenate([classifier.predict([c]) for c in crops])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_tta_averages_face_and_mirror_in_one_call(loaded: LoadedModel) -> None:
    plain = EmotionClassifier(loaded, precision="float32")
    tta = EmotionClassifier(loaded, tta=True, precision="float32")
    crops = _crops(3, seed=7)
    batch = plain.preprocess(crops)
    expected = (np.asarray(loaded.model(batch)) + np.asarray(loaded.model(batch[:, :, ::-1].copy()))) / 2
    shapes = []
    real_run = tta._run
    tta._run = lambda batch: (shapes.append(batch.shape), real_run(batch))[1]  # type: ignore[method-assign]
    np.testing.assert_allclose(tta.predict(crops), expected, atol=1e-5)
    assert shapes == [(6, 48, 48, 1)]
    assert not np.allclose(plain.predict(crops), expected, atol=1e-6)  # the mirror really mattered


def test_logits_are_softmaxed() -> None:
    import keras

    keras.utils.set_random_seed(1)
    inputs = keras.Input((32, 32, 1))
    x = keras.layers.Flatten()(inputs)
    outputs = keras.layers.Dense(3, kernel_initializer=keras.initializers.RandomNormal(stddev=0.5))(x)
    model = keras.Model(inputs, outputs)
    spec = ModelSpec(labels=("a", "b", "c"), input_size=(32, 32), channels=1, normalization="raw")
    classifier = EmotionClassifier(LoadedModel(model, spec, None))
    crop = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    logits = np.asarray(model(cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)[None, :, :, None].astype(np.float32)))
    assert not np.allclose(logits.sum(), 1.0)
    exp = np.exp(logits - logits.max())
    np.testing.assert_allclose(classifier.predict([crop]), exp / exp.sum(), rtol=1e-4)


def test_as_probabilities_leaves_probabilities_alone() -> None:
    p = np.array([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]], np.float32)
    assert np.array_equal(as_probabilities(p), p)


def test_rgb_model_gets_rgb_in_its_range() -> None:
    model = build_tiny_model(input_shape=(40, 30, 3), num_classes=4)
    spec = ModelSpec(labels=("w", "x", "y", "z"), input_size=(40, 30), channels=3, normalization="zero_1")
    classifier = EmotionClassifier(LoadedModel(model, spec, None))
    blue_bgr = np.zeros((80, 60, 3), np.uint8)
    blue_bgr[:, :, 0] = 255
    batch = classifier.preprocess([blue_bgr, np.full((10, 10), 255, np.uint8)])  # colour, then grey 2-D
    assert batch.shape == (2, 40, 30, 3)
    assert np.allclose(batch[0, :, :, 2], 1.0) and np.allclose(batch[0, :, :, 0], 0.0)  # RGB order
    assert np.allclose(batch[1], 1.0)
    assert classifier.predict([blue_bgr]).shape == (1, 4)


def test_grey_and_bgra_crops(loaded: LoadedModel) -> None:
    classifier = EmotionClassifier(loaded)
    bgra = np.zeros((60, 60, 4), np.uint8)
    grey = np.zeros((60, 60), np.uint8)
    black = np.zeros((60, 60, 3), np.uint8)
    result = classifier.predict([bgra, grey, black])
    np.testing.assert_allclose(result[0], result[2], atol=1e-6)
    np.testing.assert_allclose(result[1], result[2], atol=1e-6)


def test_created_and_used_in_a_worker_thread(tiny_model_path: Path) -> None:
    results: dict[str, object] = {}

    def work() -> None:
        try:
            classifier = EmotionClassifier(load_model(tiny_model_path))
            results["p"] = classifier.predict(_crops(2))
        except Exception as exc:  # noqa: BLE001 - reported below
            results["error"] = exc

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(120)
    assert "error" not in results, results.get("error")
    assert np.asarray(results["p"]).shape == (2, 7)
