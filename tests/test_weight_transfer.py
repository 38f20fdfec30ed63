"""`fer-studio train --init-from MODEL`: starting a training from a trained model's weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.cli import main as cli
from app.core.datasets import load_fer2013
from app.core.errors import ModelLoadError
from app.core.labels import FER2013_LABELS
from app.core.model_io import bundled_models_dir, default_model_path, load_model, read_spec
from app.core.training.architectures import build_model
from app.core.training.weight_transfer import transfer_weights


def _random_model(arch: str, classes: int, seed: int):
    import keras

    keras.utils.set_random_seed(seed)
    return build_model(arch, (48, 48, 1), classes)


def test_head_is_matched_by_class_name():
    source = _random_model("mini_xception", 7, seed=1)
    target = _random_model("mini_xception", 3, seed=2)
    head_before = [w.copy() for w in target.layers[-3].get_weights()]
    report = transfer_weights(source, FER2013_LABELS, target, ("Surprise", "happiness", "contempt"), Path("src.h5"))
    assert report.head_classes == ("Surprise", "happiness") and report.new_classes == ("contempt",)
    src_head, dst_head = source.layers[-3].get_weights(), target.layers[-3].get_weights()
    for src, dst, before in zip(src_head, dst_head, head_before):
        np.testing.assert_array_equal(dst[..., 0], src[..., FER2013_LABELS.index("surprise")])
        np.testing.assert_array_equal(dst[..., 1], src[..., FER2013_LABELS.index("happy")])
        np.testing.assert_array_equal(dst[..., 2], before[..., 2])  # a class the source never had: untouched
    for src_layer, dst_layer in zip(source.layers[1:-3], target.layers[1:-3]):
        for a, b in zip(src_layer.get_weights(), dst_layer.get_weights()):
            np.testing.assert_array_equal(a, b)


def test_other_architecture_is_refused_and_target_left_alone():
    source = _random_model("mini_xception_wide", 7, seed=1)
    target = _random_model("mini_xception", 7, seed=2)
    before = [w.copy() for w in target.get_weights()]
    with pytest.raises(ModelLoadError, match="Pick the --arch"):
        transfer_weights(source, FER2013_LABELS, target, FER2013_LABELS, Path("wide.h5"))
    for a, b in zip(before, target.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_training_starts_from_the_bundled_model(tmp_path, fer_sample):
    """With a vanishing learning rate, one epoch from a bundled model predicts as the bundled model does."""
    bundled = bundled_models_dir() / "fer_mini_xception.h5"  # mini_XCEPTION, the trainer's default --arch
    out = tmp_path / "out"
    code = cli(["train", str(fer_sample), "--out", str(out), "--init-from", str(bundled), "--epochs", "1",
                "--lr", "1e-9", "--schedule", "constant", "--no-augment", "--batch-size", "32"])
    assert code == 0
    spec = read_spec(out / "best.h5")
    assert spec is not None and spec.info["init_from"]["model"] == bundled.name
    assert spec.info["init_from"]["head_classes"] == list(FER2013_LABELS)

    rows = load_fer2013(fer_sample, splits=["PublicTest"])["PublicTest"]
    x = rows.images.astype(np.float32) / 127.5 - 1.0
    original = load_model(bundled).model.predict(x, verbose=0)
    tuned = load_model(out / "best.h5").model.predict(x, verbose=0)
    agreement = float(np.mean(original.argmax(1) == tuned.argmax(1)))
    assert agreement >= 0.9, agreement
    assert float(np.abs(original - tuned).mean()) < 0.05

    # A run started from a model resumes from its own checkpoint (it once refused: "cannot be combined").
    assert cli(["train", "--resume", str(out), "--epochs", "2"]) == 0
    assert len((out / "log.csv").read_text().strip().splitlines()) == 3  # header + 2 epochs
    config = json.loads((out / "config.json").read_text())
    assert config["init_from"] is None and Path(config["extra"]["started_from"]).resolve() == bundled.resolve()


def test_wrong_arch_and_resume_conflict_are_reported_before_training(tmp_path, capsys, fer_sample):
    wide = Path(__file__).resolve().parents[1] / "models" / "fer_mini_xception_wide.h5"
    # Without --arch the model's own is taken (test below); a wrong one given is refused before any data is read.
    assert cli(["train", str(fer_sample), "--out", str(tmp_path / "a"), "--init-from", str(wide),
                "--arch", "mini_xception"]) == 1
    err = capsys.readouterr().err
    assert "cannot start from this model" in err and "trained as mini_xception_wide" in err
    assert not (tmp_path / "a" / "best.h5").exists()
    assert cli(["train", str(fer_sample), "--out", str(tmp_path / "b"), "--init-from", str(wide),
                "--arch", "mini_xception_wide", "--resume"]) == 1
    assert "cannot be combined with --init-from" in capsys.readouterr().err
    broken = tmp_path / "broken.h5"
    broken.write_bytes(b"\x89HDF\r\n not really")
    assert cli(["train", str(fer_sample), "--out", str(tmp_path / "c"), "--init-from", str(broken)]) == 1
    assert "not a readable HDF5" in capsys.readouterr().err


def test_init_from_a_narrow_cropped_vgg_with_its_width_and_crop(tmp_path, fer_sample):
    """The pre-check builds the net training will build: --width 16 and --crop 40, not the default width 64."""
    first, second = tmp_path / "first", tmp_path / "second"
    common = ["--arch", "vgg", "--width", "16", "--crop", "40", "--epochs", "1", "--batch-size", "32",
              "--max-samples", "64", "--no-augment"]
    assert cli(["train", str(fer_sample), "--out", str(first), *common]) == 0
    assert cli(["train", str(fer_sample), "--out", str(second), "--init-from", str(first / "best.h5"),
                *common]) == 0
    spec = read_spec(second / "best.h5")
    assert spec is not None and spec.input_size == (40, 40)
    assert spec.info["init_from"]["model"] == "best.h5" and spec.info["init_from"]["layers"] > 0


def test_init_from_the_default_model_trains_its_own_architecture_without_arch(tmp_path, fer_sample):
    """The default is a width-32 VGG on 44 of 48 pixels: --init-from takes arch, width and crop from its file."""
    from app.core.evaluation import predict_array

    bundled = default_model_path()
    assert bundled is not None and read_spec(bundled).arch == "vgg"
    out = tmp_path / "out"
    assert cli(["train", str(fer_sample), "--out", str(out), "--init-from", str(bundled), "--epochs", "1",
                "--lr", "1e-9", "--schedule", "constant", "--no-augment", "--batch-size", "32"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert (config["arch"], config["width"], config["crop"], config["input_size"]) == ("vgg", 32, 44, [48, 48])
    rows = load_fer2013(fer_sample, splits=["PublicTest"])["PublicTest"]
    original = predict_array(load_model(bundled), rows.images, calibrated=False, precision="float32")
    tuned = predict_array(load_model(out / "best.h5"), rows.images, calibrated=False, precision="float32")
    assert float(np.mean(original.argmax(1) == tuned.argmax(1))) >= 0.9
    # Options given on the command line still win.
    other = tmp_path / "other"
    assert cli(["train", str(fer_sample), "--out", str(other), "--init-from", str(bundled), "--arch",
                "mini_xception", "--epochs", "1"]) == 1  # not the model's architecture: refused, clearly


def test_the_keras_free_list_of_architectures_is_the_builders_list():
    from app.core.training.arch_defaults import ARCHITECTURE_NAMES
    from app.core.training.architectures import ARCHITECTURES

    assert ARCHITECTURE_NAMES == tuple(ARCHITECTURES)


def test_architecture_of_reads_only_what_a_file_says(tmp_path):
    from app.core.training.weight_transfer import architecture_of

    models = Path(__file__).resolve().parents[1] / "models"
    assert architecture_of(models / "fer_live_vgg32.h5") == {"arch": "vgg", "width": 32, "crop": 44,
                                                             "input_size": (48, 48)}
    assert architecture_of(models / "fer_mini_xception.h5") == {"arch": "mini_xception", "input_size": (48, 48)}
    assert architecture_of(models / "fer_photo_ensemble.h5") == {}  # an ensemble: no single architecture
    broken = tmp_path / "broken.h5"
    broken.write_bytes(b"\x89HDF\r\n not really")
    assert architecture_of(broken) == {} and architecture_of(tmp_path / "missing.h5") == {}
