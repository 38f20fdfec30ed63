"""Ensembles as one file, temperature scaling, and crop test-time augmentation through the app's classifier."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from app.cli import main as cli
from app.core.calibration import calibrate, fit_temperature, reliability
from app.core.datasets import load_split
from app.core.errors import ModelLoadError
from app.core.evaluation import predict_array
from app.core.model_io import LoadedModel, ModelSpec, load_model, save_model
from app.core.recognition.classifier import EmotionClassifier, apply_temperature, tta_mode
from app.core.training.architectures import build_model
from app.core.training.ensemble import build_ensemble

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO / "models" / "fer_mini_xception.h5"
WIDE = REPO / "models" / "fer_mini_xception_wide.h5"
SAMPLE = Path(__file__).parent / "data" / "fer2013_sample.csv.gz"
LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


@pytest.fixture(scope="module")
def public_rows() -> tuple[np.ndarray, np.ndarray]:
    x, y, _ = load_split(SAMPLE, "PublicTest", (48, 48), 1)
    return x, y


@pytest.fixture(scope="module")
def crop_model(tmp_path_factory) -> Path:
    """An untrained crop net (44 of 48, RGB, zero_1 pixels, labels in another order): every adapter at work."""
    keras.utils.set_random_seed(0)
    model = build_model("vgg", (44, 44, 3), 7, width=16)
    path = tmp_path_factory.mktemp("crop") / "crop.h5"
    labels = LABELS[::-1]
    save_model(model, path, ModelSpec(labels=labels, input_size=(44, 44), channels=3, normalization="zero_1",
                                      arch="vgg", crop_from=(48, 48)))
    return path


def test_ensemble_is_one_stock_file_equal_to_the_mean_of_its_members(tmp_path, crop_model, public_rows):
    members = [load_model(p) for p in (DEFAULT, WIDE, crop_model)]
    model, spec = build_ensemble(members)
    out = tmp_path / "ensemble.h5"
    save_model(model, out, spec)
    plain = keras.models.load_model(out, safe_mode=True)  # no custom objects
    assert plain.input_shape == (None, 48, 48, 3)
    loaded = load_model(out)
    assert loaded.spec.labels == LABELS and loaded.spec.normalization == "raw"
    assert [m["file"] for m in loaded.spec.info["members"]] == ["fer_mini_xception.h5", "fer_mini_xception_wide.h5",
                                                                "crop.h5"]
    x, _ = public_rows
    x = x[:12]
    expected = np.zeros((len(x), 7), np.float32)
    for member in members:
        probs = predict_array(member, x, calibrated=False)  # each member through its own preprocessing
        order = [member.spec.labels.index(label) for label in LABELS]
        expected += probs[:, order] / len(members)
    got = predict_array(loaded, np.repeat(x, 3, axis=3) if x.shape[-1] == 1 else x, calibrated=False)
    np.testing.assert_allclose(got, expected, atol=2e-3)


def _crop_net(path: Path, seed: int, crop: int, channels: int, normalization: str) -> Path:
    """An untrained crop net whose output moves with its input (an untrained head says about 1/7 for all)."""
    keras.utils.set_random_seed(seed)
    model = build_model("vgg", (crop, crop, channels), 7, width=16)
    head = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)][-1]
    head.set_weights([w * 50 for w in head.get_weights()])
    save_model(model, path,
               ModelSpec(labels=LABELS, input_size=(crop, crop), channels=channels, normalization=normalization,
                         arch="vgg", crop_from=(48, 48)))
    return path


@pytest.mark.parametrize("tta", ["none", "flip", "crops"])
def test_ensemble_of_crop_nets_is_a_crop_model_whose_tta_is_each_members_own(tmp_path, crop_model, public_rows,
                                                                           tta):
    """Members trained on 44 of 48: the ensemble reads the 44x48 window itself, so its ten crops are the
    windows each member cuts alone (not windows of a face enlarged to 52 and centre-cropped again)."""
    grey = _crop_net(tmp_path / "grey.h5", 1, 44, 1, "minus1_1")
    members = [load_model(crop_model), load_model(grey)]
    model, spec = build_ensemble(members)
    assert spec.input_size == (44, 44) and spec.crop_from == (48, 48)
    out = tmp_path / "crops.h5"
    save_model(model, out, spec)
    assert keras.models.load_model(out, safe_mode=True).input_shape == (None, 44, 44, 3)
    loaded = load_model(out)
    assert loaded.spec.crop_from == (48, 48)
    assert not [layer.name for layer in loaded.model.layers if layer.name.endswith(("_crop", "_resize"))]
    x, _ = public_rows
    x = x[:10]
    expected = np.zeros((len(x), 7), np.float32)
    for member in members:
        # each member with its own views (float32: the comparison is of views, not of rounding)
        probs = predict_array(member, x, tta=tta, calibrated=False, precision="float32")
        expected += probs[:, [member.spec.labels.index(label) for label in loaded.spec.labels]] / len(members)
    got = predict_array(loaded, x, tta=tta, calibrated=False, precision="float32")
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert np.abs(got - predict_array(loaded, x, tta="flip" if tta == "crops" else "crops")).max() > 1e-3


def test_ensemble_window_is_what_its_most_demanding_member_needs(tmp_path, crop_model):
    small = load_model(_crop_net(tmp_path / "forty.h5", 2, 40, 1, "zero_1"))  # 40 of 48
    model, spec = build_ensemble([small, load_model(crop_model)])
    assert spec.input_size == (44, 44) and spec.crop_from == (48, 48)
    assert model.get_layer("m0_crop").output.shape[1:3] == (40, 40)  # the centre 40 of the 44 window
    whole, spec = build_ensemble([small, load_model(DEFAULT)])  # a member that reads the whole face
    assert spec.input_size == (48, 48) and spec.crop_from is None
    assert whole.get_layer("m0_crop").output.shape[1:3] == (40, 40)


def test_ensemble_refuses_members_with_other_classes(tmp_path):
    other = tmp_path / "two.h5"
    save_model(build_model("mini_xception", (48, 48, 1), 2), other,
               ModelSpec(labels=("happy", "sad"), input_size=(48, 48), channels=1))
    with pytest.raises(ModelLoadError, match="same classes"):
        build_ensemble([load_model(DEFAULT), load_model(other)])


def test_ensemble_command_never_overwrites_and_calibrates(tmp_path, capsys):
    out = tmp_path / "photo.h5"
    assert cli(["ensemble", str(DEFAULT), str(WIDE), "--out", str(out), "--calibrate-on", str(SAMPLE)]) == 0
    loaded = load_model(out)
    spec = loaded.spec
    assert spec.temperature != 1.0 and spec.info["calibration"]["split"] == "PublicTest"
    # it also says how the ensemble scores there, with its own TTA (the temperature leaves the argmax alone)
    x, y, _ = load_split(SAMPLE, "PublicTest", (48, 48), 1)
    correct = int(np.sum(np.argmax(predict_array(loaded, x, tta="flip"), axis=1) == y))
    assert f"there with TTA flip: accuracy {correct / len(y):.2%} ({correct} of {len(y)}), macro-F1" \
        in capsys.readouterr().out
    before = out.read_bytes()
    assert cli(["ensemble", str(DEFAULT), str(WIDE), "--out", str(out)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert out.read_bytes() == before


def test_temperature_fit_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (4000, 7))
    true_p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = np.array([rng.choice(7, p=p) for p in true_p])
    overconfident = apply_temperature(true_p.astype(np.float32), 0.5)  # what an over-confident net says
    temperature = fit_temperature(overconfident, y)
    assert temperature == pytest.approx(2.0, rel=0.1)
    report = calibrate(overconfident, y)
    assert report.ece_after < report.ece_before / 2 and report.nll_after < report.nll_before
    calibrated = apply_temperature(overconfident, temperature)
    assert (calibrated.argmax(1) == overconfident.argmax(1)).all()  # the label never changes


def test_reliability_of_a_perfectly_calibrated_toy():
    probs = np.array([[0.75, 0.25]] * 4, np.float32)
    assert reliability(probs, np.array([0, 0, 0, 1])).ece == pytest.approx(0.0, abs=1e-6)
    assert reliability(probs, np.array([1, 1, 1, 1])).ece == pytest.approx(0.75, abs=1e-6)


def test_calibrate_command_writes_a_copy_and_leaves_the_model(tmp_path, capsys):
    model = tmp_path / "m.h5"
    model.write_bytes(DEFAULT.read_bytes())
    assert cli(["calibrate", str(model), str(SAMPLE), "--tta", "flip", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    copy = tmp_path / "m_calibrated.h5"
    assert Path(report["model"]) == copy and report["temperature"] > 0
    assert model.read_bytes() == DEFAULT.read_bytes()
    spec = load_model(copy).spec
    assert spec.temperature == pytest.approx(report["temperature"]) and spec.tta == "flip"
    assert (tmp_path / "m_calibrated_calibration_reliability.png").stat().st_size > 0
    assert cli(["calibrate", str(model), str(SAMPLE)]) == 1  # the copy exists: not overwritten


def test_ten_crop_views_of_a_crop_model(crop_model):
    loaded = load_model(crop_model)
    crops = EmotionClassifier(loaded, tta="crops", warm_up=False)
    faces = np.random.default_rng(0).uniform(0, 1, (3, 48, 48, 3)).astype(np.float32)
    views = crops.views(faces)
    assert views.shape == (30, 44, 44, 3)
    np.testing.assert_array_equal(views[:3], faces[:, 2:46, 2:46])  # the centre first
    np.testing.assert_array_equal(views[3:6], faces[:, :44, :44])  # then the corners
    np.testing.assert_array_equal(views[15:18], faces[:, 2:46, 2:46][:, :, ::-1])  # then the mirrors
    assert EmotionClassifier(loaded, tta="none", warm_up=False).views(faces).shape == (3, 44, 44, 3)
    probs = crops.predict([np.zeros((90, 70, 3), np.uint8), np.full((48, 48, 3), 200, np.uint8)])
    assert probs.shape == (2, 7) and np.allclose(probs.sum(1), 1, atol=1e-5)


def test_crops_on_a_model_not_trained_on_crops_cut_windows_from_a_larger_face():
    classifier = EmotionClassifier(load_model(DEFAULT), tta="crops", warm_up=False)
    assert classifier.source_size == (52, 52)
    assert classifier.views(np.zeros((2, 52, 52, 1), np.float32)).shape == (20, 48, 48, 1)


def test_tta_modes_and_temperature_are_applied_by_the_classifier(public_rows):
    assert tta_mode(True) == "flip" and tta_mode(False) == "none" and tta_mode("crops") == "crops"
    with pytest.raises(ValueError):
        tta_mode("sideways")
    loaded = load_model(DEFAULT)
    x, _ = public_rows
    raw = predict_array(loaded, x[:8], calibrated=False)
    hot = LoadedModel(loaded.model, ModelSpec(**{**loaded.spec.__dict__, "temperature": 2.0}), loaded.path)
    np.testing.assert_allclose(predict_array(hot, x[:8]), apply_temperature(raw, 2.0), atol=1e-5)
