"""The window's test-time augmentation: the model's own by default (the one its card's accuracy was measured
with), or none / flip / ten crops when the user picks one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.core.labels import FER2013_LABELS
from app.core.model_io import ModelSpec, save_model
from app.core.recognition.pipeline import build_pipeline
from app.core.recognition.recognizer import Recognizer
from tests.conftest import build_tiny_model


@pytest.fixture(scope="module")
def flip_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("own_tta") / "flip_model.h5"
    save_model(build_tiny_model(seed=3), path, ModelSpec(labels=FER2013_LABELS, input_size=(48, 48), channels=1,
                                                         normalization="minus1_1", tta="flip"))
    return path


def test_own_runs_the_models_tta_and_a_choice_overrides_it(flip_model):
    recognizer = Recognizer(tta="own")
    info = recognizer.load(str(flip_model))
    assert info.own_tta == "flip" and recognizer._classifier.tta == "flip" and "own TTA flip" in info.summary()
    photo = np.full((160, 160, 3), 128, np.uint8)
    assert recognizer.process_photo(photo) is not None

    recognizer.set_options(tta="none")
    assert recognizer._classifier.tta == "none" and recognizer.info.own_tta == "flip"
    recognizer.set_options(tta="crops")
    assert recognizer._classifier.tta == "crops"
    recognizer.set_options(tta="own")
    assert recognizer._classifier.tta == "flip"


def test_the_older_yes_no_option_still_means_none_or_flip(flip_model, tiny_model_path):
    for tta, model, runs in ((False, flip_model, "none"), (True, tiny_model_path, "flip"),
                             ("own", tiny_model_path, "none")):  # a model without a TTA of its own: none
        recognizer = Recognizer(tta=tta)
        recognizer.load(str(model))
        assert recognizer._classifier.tta == runs


def test_command_pipelines_take_own_as_the_models_tta(flip_model):
    assert build_pipeline(str(flip_model), detector="haar", tta="own").classifier.tta == "flip"
    assert build_pipeline(str(flip_model), detector="haar", tta=None).classifier.tta == "flip"
    assert build_pipeline(str(flip_model), detector="haar", tta="none").classifier.tta == "none"
