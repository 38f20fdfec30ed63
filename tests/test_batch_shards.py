"""Batch shards (``fer-studio train --batch-shards``): the sharded step's maths against the whole batch, the
moving statistics of the whole batch, the plan, and real runs in a fresh process and in a busy one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from app.core.model_io import read_spec
from app.core.training.batch_shards import parse_setting, plan_shards, start_threads, use_batch_shards
from app.core.training.fast_layers import use_fused_batch_norm

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data" / "fer2013_sample.csv.gz"


def _batch(n: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(1.0, 2.0, (n, 6, 6, 3)).astype(np.float32)
    x[n // 2:] += 3.0  # the two halves differ: a per-shard statistic is not the whole batch's
    y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, n)]
    weights = rng.uniform(0.5, 2.0, n).astype(np.float32)
    return x, y, weights


def _trained(shards: int, batch_norm: bool, steps: int = 2) -> keras.Model:
    """A small net after ``steps`` SGD steps on one batch (with sample weights and an L2 penalty)."""
    keras.utils.set_random_seed(5)
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(4, 3, kernel_regularizer=keras.regularizers.L2(0.01))(inputs)
    if batch_norm:
        x = keras.layers.BatchNormalization(momentum=0.5)(x)
    x = keras.layers.Dense(4, activation="softmax")(keras.layers.Flatten()(keras.layers.ReLU()(x)))
    model = keras.Model(inputs, x)
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="categorical_crossentropy", metrics=["accuracy"])
    use_fused_batch_norm(model)
    assert use_batch_shards(model, shards) == shards
    xb, yb, wb = _batch()
    for _ in range(steps):
        logs = model.train_on_batch(xb, yb, sample_weight=wb, return_dict=True)
    model.last_logs = logs
    return model


def test_shards_give_the_whole_batch_update_where_batch_norm_is_absent() -> None:
    whole, sharded = _trained(1, batch_norm=False), _trained(2, batch_norm=False)
    for a, b in zip(whole.get_weights(), sharded.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert sharded.last_logs["loss"] == pytest.approx(whole.last_logs["loss"], rel=1e-5)
    assert sharded.last_logs["accuracy"] == pytest.approx(whole.last_logs["accuracy"])
    assert not np.allclose(whole.get_weights()[0], _trained(1, batch_norm=False, steps=1).get_weights()[0])


def test_shards_update_the_moving_statistics_once_with_the_whole_batch() -> None:
    model = _trained(2, batch_norm=True, steps=1)
    layer = next(layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization))
    # The step normalised the convolution's output with the weights it had before: the same seed builds them.
    keras.utils.set_random_seed(5)
    inputs = keras.Input((6, 6, 3))
    before = keras.Model(inputs, keras.layers.Conv2D(4, 3)(inputs))
    conv_out = before.predict_on_batch(_batch()[0]).reshape(-1, 4)
    # momentum 0.5 from the initial 0 (mean) and 1 (variance); the stock layer's biased batch variance
    np.testing.assert_allclose(layer.moving_mean.numpy(), 0.5 * conv_out.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(layer.moving_variance.numpy(), 0.5 + 0.5 * conv_out.var(0), rtol=1e-4, atol=1e-5)
    first_shard = conv_out.reshape(2, -1, 4)[0]
    assert not np.allclose(layer.moving_mean.numpy(), 0.5 * first_shard.mean(0), atol=1e-3)  # not one shard's


def test_plan() -> None:
    assert plan_shards("auto", "mini_xception", 64, cores=2).shards == 2
    assert plan_shards("auto", "mini_xception_wide", 128, cores=4).shards == 4
    assert plan_shards("auto", "vgg", 64, cores=2).shards == 1
    assert plan_shards("auto", "mini_xception", 32, cores=2).shards == 1  # 16 images a shard: too few
    assert plan_shards("auto", "mini_xception", 64, cores=16).shards == 1
    assert plan_shards("auto", "mini_xception", 64, cores=1).shards == 1
    assert plan_shards("3", "vgg", 64, cores=2).shards == 3
    assert plan_shards("4", "mini_xception", 64, cores=2, distribute=True).shards == 1
    assert plan_shards(1, "mini_xception", 64, cores=2).why == "turned off"
    for bad in ("0", "-2", "two", "1.5"):
        with pytest.raises(ValueError, match="--batch-shards"):
            parse_setting(bad)


def test_a_fresh_process_trains_in_shards_and_saves_a_stock_model(tmp_path: Path) -> None:
    out = tmp_path / "run"
    command = [sys.executable, "-m", "app.cli", "train", str(DATA), "--out", str(out), "--epochs", "1",
               "--batch-size", "32", "--batch-shards", "2", "--events", "jsonl"]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    start = next(event for event in events if event["event"] == "start")
    assert start["shards"] == 2 and start["batch_size"] == 32
    assert read_spec(out / "best.h5").info["batch_shards"] == 2
    assert json.loads((out / "config.json").read_text())["batch_shards"] == "2"
    plain = keras.models.load_model(out / "last.keras", safe_mode=True)  # stock layers, no custom step saved
    assert plain.input_shape == (None, 48, 48, 1)
    assert any(event["event"] == "report" for event in events)


def test_a_process_whose_tensorflow_already_runs_trains_whole_batches(tmp_path: Path) -> None:
    from app.core.training.engine import TrainConfig, train

    keras.ops.convert_to_tensor(np.zeros(2))  # this process's runtime has started (it has in any test run)
    assert start_threads(2) is not None  # too late to change the thread pools here
    result = train(TrainConfig(data=str(DATA), out=str(tmp_path / "run"), epochs=1, batch_size=64,
                               batch_shards="2", max_samples=128))
    assert result.best_model is not None
    assert read_spec(result.best_model).info["batch_shards"] == 1


def test_a_run_saved_before_shards_existed_resumes_whole(tmp_path: Path) -> None:
    from app.cli import build_parser
    from app.commands.train import build_config

    run = tmp_path / "old"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"data": str(DATA), "out": str(run), "arch": "mini_xception",
                                                 "epochs": 3}))
    args = build_parser().parse_args(["train", "--resume", str(run)])
    assert build_config(args).batch_shards == "1"
    args = build_parser().parse_args(["train", "--resume", str(run), "--batch-shards", "auto"])
    assert build_config(args).batch_shards == "auto"


def test_a_bad_setting_is_refused_before_anything_is_written(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from app.cli import main as cli

    out = tmp_path / "run"
    assert cli(["train", str(DATA), "--out", str(out), "--batch-shards", "two"]) != 0
    assert "--batch-shards must be auto or a whole number" in capsys.readouterr().err
    assert not out.exists()
