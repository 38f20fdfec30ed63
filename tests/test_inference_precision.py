"""The classifier's compute precision: bfloat16 copies of ordinary-convolution nets where the CPU has it natively."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from app.cli import main as cli
from app.core.datasets import load_split
from app.core.labels import FER2013_LABELS
from app.core.model_io import LoadedModel, ModelSpec, load_model, save_model
from app.core.recognition import precision as precision_module
from app.core.recognition.classifier import EmotionClassifier
from app.core.recognition.precision import (
    at_precision,
    bfloat16_copy,
    gains_from_bfloat16,
    inference_copy,
    resolve_inference_precision,
)
from app.core.training import fast_layers
from app.core.training.architectures import build_model

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO / "models" / "fer_mini_xception.h5"
PHOTO = REPO / "models" / "fer_photo_ensemble.h5"
SAMPLE = Path(__file__).parent / "data" / "fer2013_sample.csv.gz"


def _policies(model) -> dict[str, set[str]]:
    """Layer class name -> the dtype policies its layers have (nested models included)."""
    out: dict[str, set[str]] = {}

    def walk(m) -> None:
        for layer in m.layers:
            out.setdefault(type(layer).__name__, set()).add(layer.dtype_policy.name)
            if hasattr(layer, "layers"):
                walk(layer)

    walk(model)
    return out


def test_only_nets_of_ordinary_convolutions_gain_from_bfloat16():
    assert gains_from_bfloat16(build_model("vgg", (44, 44, 1), 7, width=8))
    assert not gains_from_bfloat16(load_model(DEFAULT).model)  # mini_XCEPTION: depthwise-separable
    dense_only = keras.Sequential([keras.Input((4,)), keras.layers.Dense(7, activation="softmax")])
    assert not gains_from_bfloat16(dense_only)


@pytest.mark.parametrize(("native", "expected"), [("amx_bf16", "bfloat16"), ("avx512_bf16", "bfloat16"),
                                                  (None, "float32"), ("GPU", "float32")])
def test_auto_picks_bfloat16_for_a_vgg_only_on_a_cpu_that_has_it(monkeypatch, native, expected):
    monkeypatch.setattr(fast_layers, "hardware_bf16", lambda: native)
    vgg = build_model("vgg", (44, 44, 1), 7, width=8)
    chosen, why = resolve_inference_precision(vgg, "auto")
    assert chosen == expected and why
    # mini_XCEPTION stays float32 whatever the hardware; an explicit choice is taken as asked.
    assert resolve_inference_precision(load_model(DEFAULT).model, "auto")[0] == "float32"
    assert resolve_inference_precision(vgg, "float32") == ("float32", "asked for")
    assert resolve_inference_precision(vgg, "bfloat16") == ("bfloat16", "asked for")


def test_an_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_inference_precision(build_model("vgg", (44, 44, 1), 7, width=8), "float16")


def test_the_bundled_photo_ensemble_in_bfloat16_has_its_batch_norms_folded_and_float32_outputs():
    loaded = load_model(PHOTO)
    copy = bfloat16_copy(loaded.model)
    policies = _policies(copy)
    before = _policies(loaded.model)
    assert policies["Conv2D"] == {"mixed_bfloat16"} and policies["Dense"] == {"mixed_bfloat16", "float32"}
    assert "BatchNormalization" not in policies and policies["FoldedBatchNorm"] == {"mixed_bfloat16"}
    assert policies["Average"] == {"float32"}  # the members' mean, and each member's softmax Dense, in float32
    members = [layer for layer in copy.layers if hasattr(layer, "layers")]
    assert len(members) == 3
    for member in members:
        assert [layer.dtype_policy.name for layer in member.layers if layer.name == "predictions"] == ["float32"]
    assert copy.outputs[0].dtype == "float32"
    assert before["Conv2D"] == {"float32"} and "BatchNormalization" in before  # the loaded model is left as it was
    assert copy.count_params() < loaded.model.count_params()  # the batch norms' four vectors became one bias


def _with_random_batch_norm_statistics(model, seed: int = 0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.5, beta.shape),
                               rng.normal(0, 0.5, mean.shape), rng.uniform(0.2, 2.0, variance.shape)])
    return model


def test_folding_batch_norms_into_the_layers_before_them_is_exact_in_float32():
    keras.utils.set_random_seed(0)
    vgg = _with_random_batch_norm_statistics(build_model("vgg", (44, 44, 1), 7, width=8))
    folded = inference_copy(vgg, "float32")
    kinds = _policies(folded)
    assert "BatchNormalization" not in kinds  # conv -> BN and dense -> BN all folded
    x = np.random.default_rng(1).uniform(-1, 1, (4, 44, 44, 1)).astype(np.float32)
    np.testing.assert_allclose(folded(x), vgg(x, training=False), atol=1e-5)
    # A batch norm after an activation, or after a layer another one also reads, stays as it is.
    inputs = keras.Input((12, 12, 3))
    relu = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    after_relu = keras.layers.BatchNormalization()(relu)
    shared = keras.layers.Conv2D(4, 3)(after_relu)
    both = keras.layers.Add()([keras.layers.BatchNormalization()(shared), shared])
    plain = keras.layers.BatchNormalization()(keras.layers.Conv2D(4, 1)(both))
    outputs = keras.layers.Dense(7, activation="softmax")(keras.layers.GlobalAveragePooling2D()(plain))
    mixed = _with_random_batch_norm_statistics(keras.Model(inputs, outputs), seed=3)
    folded = inference_copy(mixed, "float32")
    assert [type(layer).__name__ for layer in folded.layers].count("BatchNormalization") == 2
    x = np.random.default_rng(4).uniform(-1, 1, (2, 12, 12, 3)).astype(np.float32)
    np.testing.assert_allclose(folded(x), mixed(x, training=False), atol=1e-5)
    # mini_XCEPTION (the bundled default): only the residual branches' Conv2D -> BN fold; its separable
    # convolutions keep their batch norms, and the merges still see the same numbers.
    default = load_model(DEFAULT).model
    folded = inference_copy(default, "float32")
    folds = [layer for layer in folded.layers if type(layer).__name__ == "FoldedBatchNorm"]
    norms = [layer for layer in default.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert 0 < len(folds) < len(norms)
    x = np.random.default_rng(2).uniform(-1, 1, (4, *default.input_shape[1:])).astype(np.float32)
    np.testing.assert_allclose(folded(x), default(x, training=False), atol=1e-5)


def test_bfloat16_labels_agree_with_float32_on_real_faces():
    loaded = load_model(PHOTO)
    x, y, _ = load_split(SAMPLE, "PrivateTest", loaded.spec.crop_from, loaded.spec.channels)
    faces = list(x)
    full = EmotionClassifier(loaded, tta="none", warm_up=False, precision="float32")
    half = EmotionClassifier(loaded, tta="none", warm_up=False, precision="bfloat16")
    assert (full.precision, half.precision) == ("float32", "bfloat16")
    p32, p16 = full.predict(faces), half.predict(faces)
    assert np.allclose(p16.sum(axis=1), 1.0, atol=1e-5)
    assert np.abs(p16 - p32).max() < 0.05  # bfloat16 keeps about 3 significant digits
    assert (p16.argmax(1) == p32.argmax(1)).mean() >= 0.97
    assert (p16.argmax(1) == y).mean() >= 0.45  # chance is 14%; the card: 71.7% on the full split


def test_a_model_that_cannot_be_copied_runs_in_float32(caplog):
    class NotAModel:
        layers: list = []

    thing = NotAModel()
    assert at_precision(thing, "bfloat16") == (thing, "float32")
    assert "cannot make a bfloat16 copy" in caplog.text
    model = build_model("vgg", (44, 44, 1), 7, width=8)
    assert at_precision(model, "float32") == (model, "float32")


def test_the_classifier_reports_float32_when_the_copy_fails(monkeypatch):
    monkeypatch.setattr(precision_module, "bfloat16_copy", lambda model: (_ for _ in ()).throw(TypeError("x")))
    keras.utils.set_random_seed(0)
    spec = ModelSpec(labels=FER2013_LABELS, input_size=(44, 44), channels=1, normalization="minus1_1",
                     arch="vgg", crop_from=(48, 48))
    classifier = EmotionClassifier(LoadedModel(build_model("vgg", (44, 44, 1), 7, width=8), spec, None),
                                   warm_up=False, precision="bfloat16")
    assert classifier.precision == "float32" and "no bfloat16 copy" in classifier.precision_reason
    assert classifier.predict([np.zeros((60, 50, 3), np.uint8)]).shape == (1, 7)


def test_evaluate_reports_the_precision_it_ran_at(tmp_path, capsys):
    keras.utils.set_random_seed(0)
    path = tmp_path / "crop.h5"
    save_model(build_model("vgg", (44, 44, 1), 7, width=8), path,
               ModelSpec(labels=FER2013_LABELS, input_size=(44, 44), channels=1, normalization="minus1_1",
                         arch="vgg", crop_from=(48, 48)))
    scores = {}
    for precision in ("float32", "bfloat16"):
        assert cli(["evaluate", str(path), str(SAMPLE), "--split", "PublicTest", "--precision", precision,
                    "--json", "--out", str(tmp_path / precision)]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["meta"]["precision"] == precision
        scores[precision] = report["accuracy"]
    assert abs(scores["float32"] - scores["bfloat16"]) < 0.05
    with pytest.raises(SystemExit):
        cli(["evaluate", str(path), str(SAMPLE), "--precision", "float16"])


@pytest.mark.parametrize(("native", "expected"), [("amx_bf16", "bfloat16"), (None, "float32")])
def test_the_app_loads_a_vgg_at_the_precision_auto_picks_and_says_so(tmp_path, monkeypatch, native, expected):
    from app.core.recognition.recognizer import Recognizer

    monkeypatch.setattr(fast_layers, "hardware_bf16", lambda: native)
    keras.utils.set_random_seed(0)
    path = tmp_path / "crop.h5"
    save_model(build_model("vgg", (44, 44, 1), 7, width=8), path,
               ModelSpec(labels=FER2013_LABELS, input_size=(44, 44), channels=1, normalization="minus1_1",
                         arch="vgg", crop_from=(48, 48)))
    recognizer = Recognizer()
    info = recognizer.load(str(path))
    assert info.precision == expected and f", {expected}, own TTA none →" in info.summary()
    result = recognizer.process_photo(np.full((120, 120, 3), 128, np.uint8))
    assert result is not None
