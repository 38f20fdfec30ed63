"""The bundled default model: present, self-describing, trained (far above chance), used by default."""

from __future__ import annotations

import json

from app.cli import main as cli
from app.core.datasets import load_split
from app.core.evaluation import evaluate_model
from app.core.labels import FER2013_LABELS
from app.core.model_io import bundled_models_dir, default_model_path, load_model


def test_default_model_is_bundled_with_its_card():
    path = default_model_path()
    assert path is not None and path.is_file()
    assert path.with_suffix(".md").is_file(), "every bundled model has a model card"
    loaded = load_model(path)
    assert loaded.spec_source == "embedded"
    assert loaded.spec.labels == FER2013_LABELS
    # A crop-trained net: the centre 44x44 window of a 48x48 grey face and its mirror image (the live budget).
    assert loaded.spec.input_size == (44, 44) and loaded.spec.crop_from == (48, 48) and loaded.spec.channels == 1
    assert loaded.spec.tta == "flip" and loaded.spec.temperature != 1.0  # its card: T 1.086
    assert loaded.spec.info["splits"]["val"] == "PublicTest"  # selected on PublicTest, per the protocol


def test_default_model_is_trained(fer_sample):
    # 42 real PrivateTest rows, 6 per class: chance is 1/7 (14%); the card reports 69.8% on the full split.
    loaded = load_model(default_model_path())
    x, y, _ = load_split(fer_sample, "PrivateTest", loaded.spec.crop_from, loaded.spec.channels)
    assert evaluate_model(loaded, x, y, tta=loaded.spec.tta).accuracy >= 0.4


def test_predict_uses_the_bundled_model_without_model_flag(data_dir, capsys):
    assert cli(["predict", str(data_dir / "two_people.jpg"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip())
    assert len(result["faces"]) == 2
    for face in result["faces"]:
        assert abs(sum(face["probabilities"].values()) - 1.0) < 1e-3
        assert face["label"] in FER2013_LABELS


def test_every_bundled_model_has_a_card():
    models = [p for p in bundled_models_dir().iterdir() if p.suffix in (".h5", ".hdf5", ".keras")]
    assert models
    for model in models:
        assert model.with_suffix(".md").is_file(), model


def test_photo_ensemble_is_a_stock_keras_file_with_its_own_tta_and_temperature(fer_sample):
    import keras

    path = bundled_models_dir() / "fer_photo_ensemble.h5"
    plain = keras.models.load_model(path, safe_mode=True)  # nothing of FER Studio needed to load it
    assert plain.input_shape == (None, 44, 44, 1)  # crop-trained members: the 44x44 window of a 48x48 face
    loaded = load_model(path)
    assert loaded.spec.crop_from == (48, 48)
    assert loaded.spec.tta == "crops" and loaded.spec.temperature != 1.0  # its card: ten crops, T 1.248
    assert loaded.spec.normalization == "raw" and loaded.spec.labels == FER2013_LABELS
    members = [m["file"] for m in loaded.spec.info["members"]]
    assert members == ["vgg64_crop44_e135.h5", "vgg64_crop44_s12r.h5", "vgg64_crop44_s51.h5"]
    x, y, _ = load_split(fer_sample, "PrivateTest", loaded.spec.crop_from, loaded.spec.channels)
    assert evaluate_model(loaded, x, y, tta=loaded.spec.tta).accuracy >= 0.45  # chance is 14%; its card: 73.3%
