"""``fer-studio export``: a model without metadata re-saved with it; refusals for unsafe or clashing paths."""

from __future__ import annotations

import numpy as np
import pytest

from app.cli import main
from app.core.model_io import ModelSpec, load_model, read_spec, save_model
from app.core.training.architectures import build_model


@pytest.fixture(scope="module")
def bare_model_path(tmp_path_factory, tiny_model_factory):
    """A 5-class model saved by plain Keras (no FER Studio metadata), as published models are."""
    path = tmp_path_factory.mktemp("bare") / "published.h5"
    tiny_model_factory(num_classes=5, seed=3).save(path)
    assert read_spec(path) is None
    return path


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_export_embeds_metadata_and_keeps_weights(bare_model_path, tmp_path, capsys, suffix):
    out = tmp_path / f"exported{suffix}"
    rc = main(["export", str(bare_model_path), str(out), "--labels", "angry,happy,sad,surprise,neutral",
               "--normalization", "zero_1", "--arch", "tiny"])
    assert rc == 0, capsys.readouterr().err
    assert "wrote" in capsys.readouterr().out

    spec = read_spec(out)
    assert spec.labels == ("angry", "happy", "sad", "surprise", "neutral")
    assert spec.normalization == "zero_1" and spec.arch == "tiny"
    assert spec.input_size == (48, 48) and spec.channels == 1
    assert spec.info["exported_from"] == "published.h5"

    before, after = load_model(bare_model_path), load_model(out)
    assert after.spec_source == "embedded"
    x = np.random.default_rng(0).random((2, 48, 48, 1), dtype=np.float32)
    np.testing.assert_allclose(before.model.predict_on_batch(x), after.model.predict_on_batch(x), atol=1e-6)
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary file left behind


def test_export_refuses_to_overwrite_the_input(bare_model_path, capsys):
    before = bare_model_path.read_bytes()
    assert main(["export", str(bare_model_path), str(bare_model_path), "--labels", "fer2013"]) == 1
    assert "refusing to overwrite the input" in capsys.readouterr().err
    assert bare_model_path.read_bytes() == before


def test_export_refuses_existing_output_without_force(tiny_model_path, tmp_path, capsys):
    out = tmp_path / "taken.h5"
    out.write_bytes(b"keep me")
    assert main(["export", str(tiny_model_path), str(out)]) == 1
    assert "--force" in capsys.readouterr().err
    assert out.read_bytes() == b"keep me"
    assert main(["export", str(tiny_model_path), str(out), "--force"]) == 0
    assert read_spec(out).labels == read_spec(tiny_model_path).labels


@pytest.mark.parametrize("argv_tail, message", [
    (["--labels", "a,b"], "2 labels given"),          # 5 outputs, 2 labels
    (["--labels", "a,,b,c,d"], "empty label name"),
    (["--labels", "a,a,b,c,d"], "appears twice"),
])
def test_export_bad_labels_are_clean_errors(bare_model_path, tmp_path, capsys, argv_tail, message):
    assert main(["export", str(bare_model_path), str(tmp_path / "x.keras"), *argv_tail]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "x.keras").exists()


def test_export_missing_model_and_bad_suffix(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope.h5"), str(tmp_path / "out.h5")]) == 1
    assert "no such model file" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nope.h5"), str(tmp_path / "out.onnx")]) == 1
    assert ".h5, .hdf5 or .keras" in capsys.readouterr().err


def test_export_refuses_lambda_model_unless_trusted(tmp_path, capsys):
    import keras

    inputs = keras.Input((48, 48, 1))
    x = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(7, activation="softmax")(x))
    src = tmp_path / "lambda.keras"
    model.save(src)
    assert main(["export", str(src), str(tmp_path / "out.keras")]) == 1
    assert "embeds Python code" in capsys.readouterr().err
    assert not (tmp_path / "out.keras").exists()


def test_export_of_a_crop_model_says_its_window(tmp_path, capsys):
    src = tmp_path / "crop.h5"
    save_model(build_model("vgg", (44, 44, 1), 7, width=16), src,
               ModelSpec(labels=("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"),
                         input_size=(44, 44), channels=1, normalization="minus1_1", arch="vgg", crop_from=(48, 48)))
    assert main(["export", str(src), str(tmp_path / "out.h5")]) == 0
    assert "44x44x1 (a window of a 48x48 face)" in capsys.readouterr().out
    assert read_spec(tmp_path / "out.h5").crop_from == (48, 48)
