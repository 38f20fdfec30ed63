"""model_io: metadata round trips, inferred and sidecar specs, shape checks, bad files, safe loading, atomic save."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.core import model_io
from app.core.errors import ModelLoadError, OutputError, UnsafeModelError
from app.core.labels import FER2013_LABELS
from app.core.model_io import ModelSpec, load_model, read_spec, save_model
from tests.conftest import build_tiny_model

SPEC = ModelSpec(labels=("calm", "joy", "anger"), input_size=(40, 32), channels=1, normalization="zero_1",
                 arch="tiny", info={"epoch": 3, "val_accuracy": 0.5})


@pytest.fixture(scope="module")
def tiny3():  # type: ignore[no-untyped-def]
    return build_tiny_model(input_shape=(40, 32, 1), num_classes=3)


@pytest.mark.parametrize("suffix", [".h5", ".keras"])
def test_metadata_round_trip(tmp_path: Path, tiny3, suffix: str) -> None:
    path = save_model(tiny3, tmp_path / f"m{suffix}", SPEC)
    assert read_spec(path) == SPEC
    loaded = load_model(path)
    assert loaded.spec == SPEC and loaded.spec_source == "embedded" and loaded.path == path
    x = np.random.default_rng(0).random((2, 40, 32, 1), np.float32)
    np.testing.assert_allclose(np.asarray(loaded.model(x)), np.asarray(tiny3(x)), atol=1e-6)


def test_file_without_metadata_is_inferred(tmp_path: Path) -> None:
    seven, five = tmp_path / "seven.h5", tmp_path / "five.keras"
    build_tiny_model(input_shape=(64, 64, 1), num_classes=7).save(seven)
    build_tiny_model(input_shape=(48, 48, 3), num_classes=5).save(five)
    a = load_model(seven)
    assert a.spec.labels == FER2013_LABELS and a.spec.input_size == (64, 64) and a.spec.channels == 1
    assert a.spec.normalization == "minus1_1" and a.spec_source == "inferred"
    b = load_model(five)
    assert b.spec.labels == tuple(f"class_{i}" for i in range(5)) and b.spec.channels == 3
    assert read_spec(seven) is None


@pytest.mark.parametrize("sidecar_name", ["m.h5.json", "m.json"])
def test_sidecar_json(tmp_path: Path, tiny3, sidecar_name: str) -> None:
    path = tmp_path / "m.h5"
    tiny3.save(path)
    (tmp_path / sidecar_name).write_text(json.dumps({"labels": ["x", "y", "z"], "normalization": "raw"}),
                                         encoding="utf-8")
    loaded = load_model(path)
    assert loaded.spec.labels == ("x", "y", "z") and loaded.spec.normalization == "raw"
    assert loaded.spec_source == "sidecar" and loaded.spec.input_size == (40, 32)


def test_bad_sidecar(tmp_path: Path, tiny3) -> None:
    path = tmp_path / "m.h5"
    tiny3.save(path)
    (tmp_path / "m.h5.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        load_model(path)


def test_label_override(tmp_path: Path, tiny3) -> None:
    path = save_model(tiny3, tmp_path / "m.h5", SPEC)
    loaded = load_model(path, labels=["p", "q", "r"], normalization="minus1_1")
    assert loaded.spec.labels == ("p", "q", "r") and loaded.spec.normalization == "minus1_1"
    assert loaded.spec_source == "embedded+override"
    with pytest.raises(ModelLoadError, match="2 labels given"):
        load_model(path, labels=["p", "q"])


def _functional(input_shape, body):  # type: ignore[no-untyped-def]
    import keras

    inputs = keras.Input(input_shape)
    return keras.Model(inputs, body(inputs))


@pytest.mark.parametrize("kind", ["flat_input", "five_channels", "spatial_output", "one_output"])
def test_wrong_shapes_refused(tmp_path: Path, kind: str) -> None:
    import keras

    layers = keras.layers
    model = {
        "flat_input": lambda: _functional((100,), lambda x: layers.Dense(7, activation="softmax")(x)),
        "five_channels": lambda: _functional((48, 48, 5), lambda x: layers.Dense(7)(layers.Flatten()(x))),
        "spatial_output": lambda: _functional((48, 48, 1), lambda x: layers.Conv2D(7, 3)(x)),
        "one_output": lambda: _functional((48, 48, 1), lambda x: layers.Dense(1)(layers.Flatten()(x))),
    }[kind]()
    path = tmp_path / f"{kind}.h5"
    model.save(path)
    with pytest.raises(ModelLoadError, match="the model's (input|output)"):
        load_model(path)


@pytest.mark.parametrize("suffix", [".h5", ".keras"])
def test_truncated_and_empty_files(tmp_path: Path, tiny3, suffix: str) -> None:
    good = save_model(tiny3, tmp_path / f"good{suffix}", SPEC)
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ModelLoadError, match=f"cut{suffix}"):
        load_model(cut)
    empty = tmp_path / f"empty{suffix}"
    empty.write_bytes(b"")
    with pytest.raises(ModelLoadError, match="the file is empty"):
        load_model(empty)


def test_missing_and_wrong_type(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no such model file"):
        load_model(tmp_path / "nope.h5")
    other = tmp_path / "model.onnx"
    other.write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="unsupported model type"):
        load_model(other)
    with pytest.raises(ModelLoadError, match="not a file"):
        load_model(tmp_path)


@pytest.mark.parametrize("suffix", [".h5", ".keras"])
def test_lambda_layer_refused_and_its_code_not_run(tmp_path: Path, suffix: str) -> None:
    import keras

    marker = tmp_path / f"ran{suffix}.txt"
    # The function writes a marker file whenever Keras calls it, e.g. while rebuilding the model on load.
    function = eval(f"lambda x: (__import__('pathlib').Path({str(marker)!r}).write_text('ran'), x)[1]")
    model = _functional((48, 48, 1), lambda x: keras.layers.Dense(7, activation="softmax")(
        keras.layers.GlobalAveragePooling2D()(keras.layers.Lambda(function)(x))))
    assert marker.exists()  # building the model called it: the marker mechanism works
    marker.unlink()
    path = save_model(model, tmp_path / f"lambda{suffix}", ModelSpec(FER2013_LABELS, (48, 48), 1))
    if marker.exists():
        marker.unlink()
    with pytest.raises(UnsafeModelError, match="Lambda"):
        load_model(path)
    assert not marker.exists(), "loading without trust ran the model's embedded code"
    # With trust it loads, and the code does run: so the check above could have failed.
    loaded = load_model(path, trust=True)
    assert loaded.spec.num_classes == 7
    assert marker.exists()


def test_atomic_save_keeps_the_old_file(tmp_path: Path, tiny3, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save_model(tiny3, tmp_path / "m.h5", SPEC)
    before = path.read_bytes()

    def full_disk(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(model_io, "write_metadata", full_disk)
    other = build_tiny_model(input_shape=(40, 32, 1), num_classes=3, seed=5)
    with pytest.raises(OutputError, match="could not save"):
        save_model(other, path, SPEC)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.h5"]  # no temporary file left behind
    assert load_model(path).spec == SPEC


def test_save_rejects_bad_suffix(tmp_path: Path, tiny3) -> None:
    with pytest.raises(OutputError, match=r"\.h5, \.hdf5 or \.keras"):
        save_model(tiny3, tmp_path / "m.pb", SPEC)


def test_h5_is_for_inference_and_keras_keeps_the_optimizer(tmp_path: Path) -> None:
    import h5py
    import keras

    model = build_tiny_model(input_shape=(40, 32, 1), num_classes=3)
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    x = np.random.default_rng(0).random((4, 40, 32, 1), np.float32)
    model.fit(x, np.eye(3, dtype=np.float32)[[0, 1, 2, 0]], epochs=1, verbose=0)
    best = save_model(model, tmp_path / "best.h5", SPEC)
    with h5py.File(best) as f:
        assert "model_weights" in f and "optimizer_weights" not in f
    np.testing.assert_allclose(np.asarray(load_model(best).model(x)), np.asarray(model(x)), atol=1e-6)
    last = save_model(model, tmp_path / "last.keras", SPEC)
    resumed = keras.models.load_model(last)
    assert resumed.optimizer.iterations.numpy() == model.optimizer.iterations.numpy() == 1
