"""`fer-studio train --distill-from TEACHER`: soft targets from a real teacher, carried through the stream."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.cli import main as cli
from app.core.datasets import load_fer2013
from app.core.errors import ModelLoadError
from app.core.evaluation import predict_array
from app.core.labels import FER2013_LABELS
from app.core.model_io import ModelSpec, load_model, read_spec, save_model
from app.core.training.data import NumpyBatches, train_stream
from app.core.training.distillation import distillation_targets, teacher_columns

WIDE = Path(__file__).resolve().parents[1] / "models" / "fer_mini_xception_wide.h5"


@pytest.fixture(autouse=True)
def own_target_cache(tmp_path, monkeypatch) -> Path:
    """Each test its own shared teacher-target cache (never the user's, never another test's)."""
    from app.core.training import distillation

    folder = tmp_path / "cache"
    monkeypatch.setenv(distillation.CACHE_ENV, str(folder))
    return folder / "teacher-targets"


@pytest.fixture(scope="module")
def training_rows(fer_sample):
    return load_fer2013(fer_sample, splits=["Training"])["Training"]


def test_targets_blend_labels_with_the_teachers_flip_averaged_probabilities(training_rows):
    teacher = load_model(WIDE)
    images, labels = training_rows.images[:64], training_rows.labels[:64]
    probs = predict_array(teacher, images, tta=True)
    full = distillation_targets(teacher, images, labels, FER2013_LABELS, weight=1.0)
    np.testing.assert_allclose(full, probs / probs.sum(axis=1, keepdims=True), atol=1e-6)
    blended = distillation_targets(teacher, images, labels, FER2013_LABELS, weight=0.4)
    np.testing.assert_allclose(blended.sum(axis=1), 1.0, atol=1e-5)
    assert (blended.argmax(axis=1) == labels).all()  # the label keeps 0.6 of the mass
    np.testing.assert_allclose(blended, 0.6 * np.eye(7)[labels] + 0.4 * full, atol=1e-6)


def test_teacher_outputs_are_matched_to_the_data_sets_classes_by_name(training_rows):
    teacher = load_model(WIDE)
    keep = np.isin(training_rows.labels, [3, 5])  # happy, surprise
    images = training_rows.images[keep]
    labels = (training_rows.labels[keep] == 3).astype(np.int32)  # data-set order: Surprise=0, happiness=1
    targets = distillation_targets(teacher, images, labels, ("Surprise", "happiness"), weight=1.0)
    probs = predict_array(teacher, images, tta=True)[:, [5, 3]]
    np.testing.assert_allclose(targets, probs / probs.sum(axis=1, keepdims=True), atol=1e-6)
    assert teacher_columns(FER2013_LABELS, ("neutral", "angry"), "t") == [6, 0]
    with pytest.raises(ModelLoadError, match="no output for contempt"):
        teacher_columns(FER2013_LABELS, ("happy", "contempt"), "t")


def _numbered(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images filled with their own index, and targets that encode it too: the stream must keep them paired."""
    images = np.repeat(np.arange(n, dtype=np.uint8), 48 * 48).reshape(n, 48, 48, 1)
    labels = (np.arange(n) % 7).astype(np.int32)
    targets = np.zeros((n, 7), np.float32)
    targets[:, 0] = np.arange(n) / n
    targets[:, 1] = 1.0 - targets[:, 0]
    return images, labels, targets


def _check_pairs(x: np.ndarray, y: np.ndarray, n: int) -> None:
    index = np.rint((np.asarray(x)[:, 0, 0, 0] + 1.0) * 127.5).astype(int)
    np.testing.assert_allclose(np.asarray(y)[:, 0] * n, index, atol=1e-3)


def test_stream_yields_each_image_with_its_own_soft_target():
    n = 200
    images, labels, targets = _numbered(n)
    stream, steps = train_stream(images, labels, 7, 32, "minus1_1", seed=3, targets=targets)
    for (x, y), _ in zip(stream, range(steps)):
        _check_pairs(x.numpy(), y.numpy(), n)
    batches = NumpyBatches(images, labels, 7, 32, "minus1_1", None, None, 0.0, 3, targets)
    for i in range(len(batches)):
        _check_pairs(*batches[i], n)


def test_distilled_training_records_its_teacher_and_refuses_a_teacher_without_the_classes(
        tmp_path, capsys, fer_sample, tiny_model_factory):
    out = tmp_path / "out"
    assert cli(["train", str(fer_sample), "--out", str(out), "--epochs", "1", "--batch-size", "32",
                "--distill-from", str(WIDE), "--distill-weight", "0.7"]) == 0
    assert "teacher" in capsys.readouterr().out
    config = read_spec(out / "best.h5").info["config"]
    assert config["distill_from"] == str(WIDE) and config["distill_weight"] == 0.7

    other = tmp_path / "other.h5"
    save_model(tiny_model_factory(num_classes=3), other,
               ModelSpec(labels=("cat", "dog", "bird"), input_size=(48, 48), channels=1, normalization="minus1_1"))
    assert cli(["train", str(fer_sample), "--out", str(tmp_path / "o2"), "--distill-from", str(other)]) == 1
    err = capsys.readouterr().err
    assert "cannot teach this data set" in err and "Traceback" not in err
    assert cli(["train", str(fer_sample), "--out", str(tmp_path / "o3"), "--distill-from", str(WIDE),
                "--distill-weight", "1.5"]) == 1
    assert "--distill-weight" in capsys.readouterr().err


def test_a_resumed_distillation_reuses_the_teachers_saved_targets(tmp_path, capsys, fer_sample, monkeypatch):
    from app.core.training import distillation

    out = tmp_path / "out"
    assert cli(["train", str(fer_sample), "--out", str(out), "--epochs", "1", "--batch-size", "32",
                "--distill-from", str(WIDE), "--distill-weight", "0.7"]) == 0
    assert "scoring the" in capsys.readouterr().out
    saved = out / distillation.TARGETS_NAME
    with np.load(saved) as cache:
        first = cache["targets"].copy()
    rows = load_fer2013(fer_sample, splits=["Training"])["Training"]
    assert first.shape == (len(rows), 7) and np.allclose(first.sum(axis=1), 1.0, atol=1e-5)

    def no_second_pass(*args, **kwargs):
        raise AssertionError("the teacher scored the training set again")

    scoring = distillation.distillation_targets
    monkeypatch.setattr(distillation, "distillation_targets", no_second_pass)
    assert cli(["train", "--resume", str(out), "--epochs", "2"]) == 0
    assert "saved by an earlier start of this run" in capsys.readouterr().out
    assert len((out / "log.csv").read_text().strip().splitlines()) == 3  # header + 2 epochs

    # Another weight, or a damaged file, is not reused: the targets are scored again and the file replaced.
    monkeypatch.setattr(distillation, "distillation_targets", scoring)
    assert cli(["train", "--resume", str(out), "--epochs", "3", "--distill-weight", "0.5"]) == 0
    assert "scoring the" in capsys.readouterr().out
    with np.load(saved) as cache:
        assert not np.allclose(cache["targets"], first)
    # A damaged file in the run folder: the shared cache's copy is taken and the run folder's repaired;
    # with both damaged, the teacher scores again.
    saved.write_bytes(b"PK\x03\x04 not an archive")
    assert cli(["train", "--resume", str(out), "--epochs", "4"]) == 0
    assert "earlier run with the same teacher" in capsys.readouterr().out
    with np.load(saved) as cache:
        assert cache["targets"].shape == first.shape
    saved.write_bytes(b"PK\x03\x04 not an archive")
    for shared in (tmp_path / "cache" / "teacher-targets").glob("*.npz"):
        shared.write_bytes(b"not an archive either")
    assert cli(["train", "--resume", str(out), "--epochs", "5"]) == 0
    assert "scoring the" in capsys.readouterr().out
    with np.load(saved) as cache:
        assert cache["targets"].shape == first.shape


def test_another_run_with_the_same_teacher_and_data_reuses_the_shared_targets(
        tmp_path, capsys, fer_sample, monkeypatch, own_target_cache):
    from app.core.training import distillation

    first = tmp_path / "first"
    assert cli(["train", str(fer_sample), "--out", str(first), "--epochs", "1", "--batch-size", "32",
                "--distill-from", str(WIDE), "--distill-weight", "0.7"]) == 0
    assert "scoring the" in capsys.readouterr().out
    assert len(list(own_target_cache.glob("*.npz"))) == 1

    def no_second_pass(*args, **kwargs):
        raise AssertionError("the teacher scored the training set again")

    # A new run folder (another seed and schedule, same teacher, data and weight) scores nothing ...
    monkeypatch.setattr(distillation, "distillation_targets", no_second_pass)
    second = tmp_path / "second"
    assert cli(["train", str(fer_sample), "--out", str(second), "--epochs", "1", "--batch-size", "32",
                "--seed", "5", "--distill-from", str(WIDE), "--distill-weight", "0.7"]) == 0
    assert "earlier run with the same teacher, data and weight" in capsys.readouterr().out
    # ... and keeps its own copy, the same targets.
    with np.load(first / distillation.TARGETS_NAME) as a, np.load(second / distillation.TARGETS_NAME) as b:
        np.testing.assert_array_equal(a["targets"], b["targets"])
    # Another weight is another key: scored again.
    with pytest.raises(AssertionError, match="scored the training set again"):
        cli(["train", str(fer_sample), "--out", str(tmp_path / "third"), "--epochs", "1", "--batch-size", "32",
             "--distill-from", str(WIDE), "--distill-weight", "0.5"])


def test_a_shared_cache_that_cannot_be_written_does_not_stop_training(tmp_path, capsys, fer_sample, monkeypatch,
                                                                       caplog):
    from app.core.training import distillation

    blocker = tmp_path / "a file, not a folder"
    blocker.write_text("in the way")
    monkeypatch.setenv(distillation.CACHE_ENV, str(blocker))
    out = tmp_path / "out"
    with caplog.at_level("WARNING"):
        assert cli(["train", str(fer_sample), "--out", str(out), "--epochs", "1", "--batch-size", "32",
                    "--distill-from", str(WIDE)]) == 0
    assert (out / distillation.TARGETS_NAME).is_file() and (out / "best.h5").is_file()
    assert "not kept for other runs" in caplog.text
    assert blocker.read_text() == "in the way"
