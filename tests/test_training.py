"""The training engine on real FER2013 rows: short real trainings, resume, stop, bad input."""

from __future__ import annotations

import csv
import gzip
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from app.cli import main as cli
from app.core.datasets import load_fer2013
from app.core.labels import FER2013_LABELS
from app.core.model_io import load_model, read_spec
from app.core.training.data import (
    NumpyBatches,
    balanced_class_weights,
    even_batch_size,
    process_seed,
    sampling_probabilities,
    train_stream,
)

REPO = Path(__file__).resolve().parents[1]


def _events(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, fer_sample):
    """Two real epochs of mini_XCEPTION on the sample, with an odd batch size a user might type."""
    out = tmp_path_factory.mktemp("run") / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli", "train", str(fer_sample), "--out", str(out), "--epochs", "2",
         "--batch-size", "31", "--events", "jsonl"],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, _events(proc.stdout)


def test_training_writes_loadable_model_with_metadata(trained_run, fer_sample):
    out, events = trained_run
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert events[0]["batch_size"] == 32  # 31 rounded up to even
    assert [e["epoch"] for e in events if e["event"] == "epoch_end"] == [1, 2]
    for e in events:
        if e["event"] == "epoch_end":
            assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(e["metrics"])
    loaded = load_model(out / "best.h5")
    assert loaded.spec.labels == FER2013_LABELS
    assert loaded.spec.input_size == (48, 48) and loaded.spec.channels == 1
    assert loaded.spec.arch == "mini_xception" and loaded.spec_source == "embedded"
    info = loaded.spec.info
    assert info["splits"] == {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}
    assert len(info["dataset_fingerprint"]) == 16 and info["epoch"] in (1, 2)
    report = next(e for e in events if e["event"] == "report")
    assert 0.0 <= report["accuracy"] <= 1.0 and set(report["per_class"]) == set(FER2013_LABELS)
    assert Path(report["confusion_png"]).is_file()
    with open(out / "log.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 2


def test_trained_model_is_used_by_predict(trained_run, data_dir, capsys):
    out, _ = trained_run
    code = cli(["predict", str(data_dir / "justin.jpg"), "--model", str(out / "best.h5"), "--json"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[0])
    assert code == 0 and result["error"] is None
    assert len(result["faces"]) == 1
    assert set(result["faces"][0]["probabilities"]) == set(FER2013_LABELS)


def test_resume_continues_from_last_epoch(trained_run, fer_sample):
    out, _ = trained_run
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli", "train", str(fer_sample), "--out", str(out), "--epochs", "3",
         "--batch-size", "32", "--resume", "--events", "jsonl"],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = _events(proc.stdout)
    assert events[0]["initial_epoch"] == 2
    assert [e["epoch"] for e in events if e["event"] == "epoch_end"] == [3]
    assert read_spec(out / "last.keras").info["epoch"] == 3


def test_resume_keeps_the_runs_settings_and_follows_the_schedule_of_the_new_length(tmp_path, fer_sample):
    from app.core.training.callbacks import cosine_learning_rate

    out = tmp_path / "out"
    first = subprocess.run(
        [sys.executable, "-m", "app.cli", "train", str(fer_sample), "--out", str(out), "--epochs", "1",
         "--batch-size", "32", "--mixup", "0.3", "--label-smoothing", "0.1", "--optimizer", "sgd", "--lr", "0.02",
         "--events", "jsonl"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    # neither the data nor the settings are typed again: the run's config.json has them
    second = subprocess.run(
        [sys.executable, "-m", "app.cli", "train", "--resume", str(out), "--epochs", "3", "--events", "jsonl"],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    config = json.loads((out / "config.json").read_text())
    assert config["mixup"] == 0.3 and config["label_smoothing"] == 0.1 and config["optimizer"] == "sgd"
    assert config["epochs"] == 3 and config["resume"] == str(out)
    events = _events(second.stdout)
    start = events[0]
    assert start["initial_epoch"] == 1
    # the resumed process continues the data stream after the first process's batches (not a replay of them);
    # its dropout draws from another seed
    first_start = _events(first.stdout)[0]
    assert first_start["stream_seed"] == start["stream_seed"] == 1337
    assert first_start["stream_start_batch"] == 0 and start["stream_start_batch"] == start["steps_per_epoch"]
    assert first_start["process_seed"] == 1337 and start["process_seed"] == process_seed(1337, 1) != 1337
    ends = [e for e in events if e["event"] == "epoch_end"]
    assert [e["epoch"] for e in ends] == [2, 3]
    steps = start["steps_per_epoch"]
    # the rate of the last step of epoch 2 is that of a 3-epoch schedule, not the floor of the 1-epoch one
    expected = cosine_learning_rate(2 * steps - 1, 0.02, 3, steps)
    assert ends[0]["metrics"]["learning_rate"] == pytest.approx(expected, rel=1e-4)
    assert expected > 0.02 * 0.1


def test_sigint_stops_after_batch_and_keeps_best_checkpoint(tmp_path, fer_sample):
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "train", str(fer_sample), "--out", str(out), "--epochs", "50",
         "--batch-size", "16", "--events", "jsonl"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(json.loads(line))
        if lines[-1]["event"] == "checkpoint":
            proc.send_signal(signal.SIGINT)
            break
    rest, _ = proc.communicate(timeout=300)
    events = lines + _events(rest)
    assert proc.returncode == 0
    done = events[-1]
    assert done["event"] == "done" and done["interrupted"] is True
    assert len([e for e in events if e["event"] == "epoch_end"]) < 50
    assert load_model(done["best_model"]).spec.labels == FER2013_LABELS
    # The stop came in epoch 2's first batch: that partial epoch is dropped, not validated or saved as whole.
    assert done["dropped_epoch"] == 2
    assert [e["epoch"] for e in events if e["event"] == "epoch_end"] == [1]
    assert read_spec(out / "last.keras").info["epoch"] == 1
    with (out / "log.csv").open(newline="") as handle:
        assert [row["epoch"] for row in csv.DictReader(handle)] == ["0"]
    # so a resumed run repeats epoch 2 from its first batch
    resumed = subprocess.run([sys.executable, "-m", "app.cli", "train", "--resume", str(out), "--epochs", "2",
                              "--events", "jsonl"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    start = _events(resumed.stdout)[0]
    assert start["initial_epoch"] == 1 and start["stream_start_batch"] == start["steps_per_epoch"]
    assert [e["epoch"] for e in _events(resumed.stdout) if e["event"] == "epoch_end"] == [2]


def test_folder_dataset_training(tmp_path, fer_sample):
    import cv2

    splits = load_fer2013(fer_sample, splits=["Training"])
    root = tmp_path / "faces"
    for i, (image, label) in enumerate(zip(splits["Training"].images, splits["Training"].labels)):
        name = FER2013_LABELS[label]
        if name not in ("happy", "sad", "surprise"):
            continue
        (root / name).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / name / f"{i}.png"), image[:, :, 0])
    (root / "sad" / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    code = cli(["train", str(root), "--out", str(out), "--epochs", "1", "--arch", "simple_cnn",
                "--batch-size", "16", "--class-weights", "--events", "jsonl"])
    assert code == 0
    spec = read_spec(out / "best.h5")
    assert spec is not None and spec.labels == ("happy", "sad", "surprise")
    assert spec.info["train_samples"] + spec.info["val_samples"] == 90  # 30 per class; the broken file skipped


def test_distribute_on_two_logical_cpus(tmp_path, fer_sample):
    script = f"""
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from app.core.training.engine import TrainConfig, train
result = train(TrainConfig(data={str(fer_sample)!r}, out={str(tmp_path / 'out')!r}, epochs=1, batch_size=30,
                           max_samples=64, distribute=True))
print("BEST", result.best_model)
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "BEST" in proc.stdout
    assert read_spec(tmp_path / "out" / "best.h5").info["batch_size"] == 32  # even per replica


def test_training_batches_are_full_and_even():
    labels = np.array([0] * 37 + [1] * 3 + [2] * 11, dtype=np.int32)  # 51 samples: odd, not a multiple
    images = np.random.default_rng(0).integers(0, 255, (51, 48, 48, 1), dtype=np.uint8)
    batch = even_batch_size(7)
    assert batch == 8 and even_batch_size(1) == 2 and even_batch_size(30, replicas=4) == 32
    stream, steps = train_stream(images, labels, 3, batch, "minus1_1", oversample=True)
    assert steps == 7
    seen = []
    for x, y in stream.take(steps * 20):
        assert x.shape == (8, 48, 48, 1) and y.shape == (8, 3)
        assert float(np.min(x)) >= -1.0 and float(np.max(x)) <= 1.0
        seen.extend(np.argmax(y.numpy(), axis=1))
    counts = np.bincount(seen, minlength=3) / len(seen)
    assert np.all(np.abs(counts - 1 / 3) < 0.08)  # oversampling balances 37/3/11


def _numbered(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Images filled with their own index (n <= 256), so a batch tells which samples it holds."""
    return np.repeat(np.arange(n, dtype=np.uint8), 48 * 48).reshape(n, 48, 48, 1), (np.arange(n) % 3).astype(np.int32)


def _tf_batches(stream, count: int) -> list[np.ndarray]:
    return [np.concatenate([x.numpy().reshape(len(x), -1), y.numpy()], axis=1) for x, y in stream.take(count)]


@pytest.mark.parametrize("oversample", [False, True])
def test_a_resumed_stream_continues_the_uninterrupted_one_exactly(oversample):
    """A run resumed after epoch k sees the batches the uninterrupted run sees from epoch k on: the same
    images in the same order with the same augmentation and mixup (stateless draws keyed on the position),
    not a replay of the first epochs (what one seed per process did) and not an unrelated stream."""
    from app.core.training.augment import Augmentation

    images, labels = _numbered(90)
    aug = Augmentation.from_strength(1.0, (44, 44))

    def stream(start_epoch: int):
        return train_stream(images, labels, 3, 16, "minus1_1", oversample=oversample, mixup=0.2, seed=5,
                            augmentation=aug, start_epoch=start_epoch)

    (fresh, steps), (again, _), (resumed, _) = stream(0), stream(0), stream(2)
    assert steps == 6
    whole = _tf_batches(fresh, 4 * steps)
    assert all(np.array_equal(a, b) for a, b in zip(whole, _tf_batches(again, 4 * steps)))  # reproducible
    tail = _tf_batches(resumed, 2 * steps)
    assert all(np.array_equal(a, b) for a, b in zip(whole[2 * steps:], tail))
    assert not np.allclose(whole[0], tail[0])


def test_each_pass_of_the_stream_shows_every_sample_once():
    """Without oversampling the stream is a chain of permutations: any N consecutive samples from a pass
    boundary are all N samples, on both the tf.data and the numpy (JAX / PyTorch) path."""
    n = 90
    images, labels = _numbered(n)
    stream, steps = train_stream(images, labels, 3, 16, "minus1_1", seed=5)
    seen = np.concatenate([np.rint((x.numpy()[:, 0, 0, 0] + 1) * 127.5) for x, _ in stream.take(3 * steps)])
    for p in range(3):
        assert sorted(seen[p * n:(p + 1) * n].astype(int)) == list(range(n))
    assert not np.array_equal(seen[:n], seen[n:2 * n])  # each pass its own order
    numpy_stream = NumpyBatches(images, labels, 3, 16, "minus1_1", None, None, 0.0, 5)
    seen = []
    for _ in range(3):
        seen.extend(np.rint((numpy_stream[i][0][:, 0, 0, 0] + 1) * 127.5) for i in range(len(numpy_stream)))
        numpy_stream.on_epoch_end()
    seen = np.concatenate(seen).astype(int)
    for p in range(3):
        assert sorted(seen[p * n:(p + 1) * n]) == list(range(n))


@pytest.mark.parametrize("oversample", [False, True])
def test_the_numpy_stream_resumes_exactly_too(oversample):
    from app.core.training.augment import Augmentation

    images, labels = _numbered(90)
    probabilities = sampling_probabilities(labels, 3, oversample)
    aug = Augmentation.from_strength(1.0, (44, 44))
    fresh = NumpyBatches(images, labels, 3, 16, "minus1_1", probabilities, None, 0.2, 5, augmentation=aug)
    resumed = NumpyBatches(images, labels, 3, 16, "minus1_1", probabilities, None, 0.2, 5, augmentation=aug,
                           start_epoch=1)
    first = [fresh[i] for i in range(len(fresh))]
    fresh.on_epoch_end()
    for i in range(len(fresh)):
        x, y = fresh[i]
        rx, ry = resumed[i]
        assert np.array_equal(x, rx) and np.array_equal(y, ry)
    assert not np.array_equal(first[0][0], resumed[0][0])


def test_class_weights_balance_the_loss():
    labels = np.array([0] * 30 + [1] * 10 + [3] * 20)
    weights = balanced_class_weights(labels, 4)
    assert weights[2] == 0
    totals = np.bincount(labels, minlength=4) * weights
    assert np.allclose(totals[[0, 1, 3]], totals[0])


@pytest.mark.parametrize("content, message", [
    ("emotion,image,Usage\n0,1 2 3,Training\n", "missing pixels"),
    ("emotion,pixels,Usage\n0," + " ".join(["1"] * 100) + ",Training\n", "100 pixel values"),
    ("emotion,pixels,Usage\n9," + " ".join(["1"] * 2304) + ",Training\n", "unknown emotion label '9'"),
    ("emotion,pixels,Usage\n", "no rows"),
])
def test_malformed_csv_is_reported_before_training(tmp_path, capsys, content, message):
    path = tmp_path / "bad.csv.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(content)
    assert cli(["train", str(path), "--out", str(tmp_path / "out"), "--epochs", "1"]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_unusable_folders_and_outputs_are_reported(tmp_path, capsys, fer_sample):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli(["train", str(empty), "--out", str(tmp_path / "o1")]) == 1
    assert "no class sub-folders" in capsys.readouterr().err
    single = tmp_path / "single" / "happy"
    single.mkdir(parents=True)
    import cv2

    for i in range(4):
        cv2.imwrite(str(single / f"{i}.png"), np.full((48, 48), 40 * i, np.uint8))
    assert cli(["train", str(single.parent), "--out", str(tmp_path / "o2")]) == 1
    assert "only one class" in capsys.readouterr().err
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "best.h5").write_bytes(b"the user's earlier model")
    assert cli(["train", str(fer_sample), "--out", str(existing)]) == 1
    assert "already holds a training run" in capsys.readouterr().err
    assert (existing / "best.h5").read_bytes() == b"the user's earlier model"
    if os.geteuid() != 0:  # root can write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert cli(["train", str(fer_sample), "--out", str(locked / "x")]) == 1
        assert "cannot write" in capsys.readouterr().err


def test_output_path_that_is_a_file_is_reported(tmp_path, capsys, fer_sample):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert cli(["train", str(fer_sample), "--out", str(blocker / "sub"), "--events", "jsonl"]) == 1
    events = _events(capsys.readouterr().out)
    assert events[-1]["event"] == "error" and "cannot write" in events[-1]["message"]


def test_max_samples_is_an_upper_bound_and_keeps_every_class():
    from app.core.datasets import Split
    from app.core.training.engine import _subsample

    labels = np.repeat(np.arange(7), [3, 5, 40, 41, 13, 29, 27]).astype(np.int32)
    split = Split(np.zeros((len(labels), 48, 48, 1), np.uint8), labels)
    for wanted in (10, 37, 100, 157):
        kept = _subsample(split, wanted, seed=5)
        assert len(kept) <= wanted and len(kept) >= wanted - 7
    assert set(_subsample(split, 100, seed=5).labels) == set(range(7))
    assert len(_subsample(split, 1000, seed=5)) == len(labels)


def test_list_archs_prints_parameter_counts(capsys):
    assert cli(["train", "--list-archs"]) == 0
    out = capsys.readouterr().out
    assert "mini_xception" in out and "58,423" in out and "resnet50" in out


def _l2_penalty(model) -> float:
    """The summed regularisation loss of a model on its current weights."""
    return float(sum(float(loss) for loss in model.losses))


def test_l2_sets_the_kernel_penalty_of_the_architecture():
    from app.core.training.architectures import build_model

    reference = build_model("mini_xception")  # the reference's own L2 of 0.01
    lighter = build_model("mini_xception", l2=0.001)
    none = build_model("mini_xception", l2=0.0)
    lighter.set_weights(reference.get_weights())
    none.set_weights(reference.get_weights())
    assert _l2_penalty(reference) > 0
    assert _l2_penalty(lighter) == pytest.approx(_l2_penalty(reference) / 10, rel=1e-4)
    assert _l2_penalty(none) == 0.0
    assert _l2_penalty(build_model("vgg")) == 0.0 and _l2_penalty(build_model("vgg", l2=1e-4)) > 0
    with pytest.raises(ValueError, match="does not apply to resnet50"):
        build_model("resnet50", l2=0.01)
    with pytest.raises(ValueError, match="0 or more"):
        build_model("mini_xception", l2=-1.0)


def test_l2_is_trained_with_and_recorded(tmp_path, capsys, fer_sample):
    out = tmp_path / "out"
    assert cli(["train", str(fer_sample), "--out", str(out), "--epochs", "1", "--max-samples", "64",
                "--l2", "0.002", "--events", "jsonl"]) == 0
    loaded = load_model(out / "best.h5")
    assert loaded.spec.info["config"]["l2"] == 0.002
    penalties = [layer.kernel_regularizer.get_config()["l2"] for layer in loaded.model.layers
                 if getattr(layer, "kernel_regularizer", None) is not None]
    assert len(penalties) == 2 and penalties == pytest.approx([0.002, 0.002])  # the two stem convolutions
    # a penalty the architecture cannot take is refused before any data is read
    capsys.readouterr()
    assert cli(["train", str(fer_sample), "--out", str(tmp_path / "o2"), "--arch", "resnet50", "--l2", "0.01"]) == 1
    err = capsys.readouterr().err
    assert "--l2 does not apply to resnet50" in err and "Traceback" not in err


def _dropout_rates(model) -> list[float]:
    import keras

    return [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)]


def test_dropout_scale_multiplies_the_architectures_rates_and_zero_leaves_the_layers_out():
    from app.core.training.architectures import build_model

    own = build_model("vgg", (44, 44, 1), 7, width=8)
    assert _dropout_rates(own) == pytest.approx([0.2, 0.25, 0.3, 0.35, 0.5])
    assert _dropout_rates(build_model("vgg", (44, 44, 1), 7, width=8, dropout_scale=0.5)) == pytest.approx(
        [0.1, 0.125, 0.15, 0.175, 0.25])
    none = build_model("vgg", (44, 44, 1), 7, width=8, dropout_scale=0.0)
    assert _dropout_rates(none) == [] and len(none.layers) == len(own.layers) - 5
    assert none.count_params() == own.count_params()  # the same weights: --init-from works either way
    assert _dropout_rates(build_model("simple_cnn", dropout_scale=2 / 3)) == pytest.approx(
        [0.25 * 2 / 3] * 3 + [0.4 * 2 / 3] * 2)
    with pytest.raises(ValueError, match="does not apply to mini_xception, which has no dropout"):
        build_model("mini_xception", dropout_scale=0.5)
    for bad in (-0.1, 1.9, float("nan")):
        with pytest.raises(ValueError, match="between 0 and 1.8"):
            build_model("vgg", dropout_scale=bad)


def test_dropout_scale_is_trained_with_recorded_and_resumed(tmp_path, capsys, fer_sample):
    out = tmp_path / "out"
    assert cli(["train", str(fer_sample), "--out", str(out), "--arch", "vgg", "--width", "8", "--epochs", "1",
                "--max-samples", "64", "--dropout-scale", "0", "--events", "jsonl"]) == 0
    loaded = load_model(out / "best.h5")
    assert loaded.spec.info["config"]["dropout_scale"] == 0.0
    assert _dropout_rates(loaded.model) == []
    assert json.loads((out / "config.json").read_text())["dropout_scale"] == 0.0
    # --resume with more epochs keeps the run's own scale
    assert cli(["train", "--resume", str(out), "--epochs", "2", "--events", "jsonl"]) == 0
    assert load_model(out / "best.h5").spec.info["config"]["dropout_scale"] == 0.0
    assert _dropout_rates(load_model(out / "best.h5").model) == []
    # refused before any data is read, for an architecture without dropout
    capsys.readouterr()
    assert cli(["train", str(fer_sample), "--out", str(tmp_path / "o2"), "--dropout-scale", "0.5"]) == 1
    err = capsys.readouterr().err
    assert "--dropout-scale does not apply to mini_xception" in err and "Traceback" not in err
    assert not (tmp_path / "o2").exists()
