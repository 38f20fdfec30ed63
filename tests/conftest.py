"""Shared test set-up: headless Qt, quiet TensorFlow, paths to the real fixtures, small real models."""

from __future__ import annotations

import os

# Must be set before Qt or TensorFlow are imported by any test module.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"
REPO = DATA.parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """What the app caches for later runs (teacher targets) goes to a temporary folder, not the user's."""
    previous = os.environ.get("FER_STUDIO_CACHE")
    os.environ["FER_STUDIO_CACHE"] = str(tmp_path_factory.mktemp("fer-studio-cache"))
    yield
    if previous is None:
        os.environ.pop("FER_STUDIO_CACHE", None)
    else:
        os.environ["FER_STUDIO_CACHE"] = previous


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def fer_sample() -> Path:
    """A few hundred real FER2013 rows (all three splits, all seven classes) in the original CSV layout."""
    return DATA / "fer2013_sample.csv.gz"


def build_tiny_model(input_shape=(48, 48, 1), num_classes: int = 7, seed: int = 0):
    """A small real (untrained) Keras CNN, for tests of loading, shapes and plumbing."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="session")
def tiny_model_factory():
    """build_tiny_model, for tests that need their own variant (conftest is not importable by name)."""
    return build_tiny_model


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> Path:
    """A tiny 48x48 grey, 7-class model saved by model_io (with embedded metadata)."""
    from app.core.labels import FER2013_LABELS
    from app.core.model_io import ModelSpec, save_model

    path = tmp_path_factory.mktemp("models") / "tiny.h5"
    spec = ModelSpec(labels=FER2013_LABELS, input_size=(48, 48), channels=1, normalization="minus1_1",
                     arch="tiny_test_cnn")
    save_model(build_tiny_model(), path, spec)
    return path
