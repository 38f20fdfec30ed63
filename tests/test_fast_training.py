"""Fast training: fused batch norm equals the stock layer, precision choice, stock-only saved files,
one-warp augmentation with random crops, and the per-step cosine schedule."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Callable

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from app.core.model_io import load_model
from app.core.training import fast_layers
from app.core.training.architectures import build_model
from app.core.training.augment import Augmentation, augment_batch_np, augment_batch_tf, center_crop
from app.core.training.callbacks import cosine_learning_rate
from app.core.training.fast_layers import float32_copy, resolve_precision, use_fused_batch_norm

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data" / "fer2013_sample.csv.gz"


def _pair(shape: tuple[int, ...], seed: int = 0) -> tuple[keras.layers.Layer, keras.layers.Layer]:
    rng = np.random.default_rng(seed)
    stock, fused = keras.layers.BatchNormalization(momentum=0.9), keras.layers.BatchNormalization(momentum=0.9)
    stock.build(shape)
    fused.build(shape)
    weights = [rng.normal(1.0, 0.3, w.shape).astype(np.float32) for w in stock.get_weights()]
    weights[3] = np.abs(weights[3])  # a variance
    stock.set_weights(weights)
    fused.set_weights(weights)
    assert use_fused_batch_norm(keras.Sequential([keras.Input(shape[1:]), fused])) == 1
    return stock, fused


def _bfloat16_vgg() -> keras.Model:
    """The VGG of width 16 on 44x44 inputs, built under the mixed bfloat16 policy."""
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        return build_model("vgg", (44, 44, 1), 7, width=16)
    finally:
        keras.mixed_precision.set_dtype_policy(previous)


def _trained_without_and_with(build: Callable[[], keras.Model], speed_up: Callable[[keras.Model], None],
                              size: int) -> tuple[np.ndarray, list[keras.Model]]:
    """(the batch, [stock model, sped-up model]) after three identical SGD steps from the same weights."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, size, size, 1)).astype(np.float32)
    y = np.eye(7, dtype=np.float32)[rng.integers(0, 7, 8)]
    models = []
    for fast in (False, True):
        keras.utils.set_random_seed(3)
        model = build()
        if fast:
            speed_up(model)
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss="categorical_crossentropy")
        for _ in range(3):
            model.train_on_batch(x, y)
        models.append(model)
    return x, models


@pytest.mark.parametrize("shape", [(16, 6, 6, 8), (32, 24)])
@pytest.mark.parametrize("training", [True, False])
def test_fused_batch_norm_equals_the_stock_layer(shape: tuple[int, ...], training: bool) -> None:
    stock, fused = _pair(shape)
    x = tf.constant(np.random.default_rng(1).normal(2.0, 3.0, shape).astype(np.float32))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y_stock, y_fused = stock(x, training=training), fused(x, training=training)
        loss_stock = tf.reduce_sum(y_stock * y_stock * 0.1 + y_stock)
        loss_fused = tf.reduce_sum(y_fused * y_fused * 0.1 + y_fused)
    np.testing.assert_allclose(y_fused, y_stock, atol=2e-5)
    np.testing.assert_allclose(tape.gradient(loss_fused, x), tape.gradient(loss_stock, x), atol=2e-5)
    np.testing.assert_allclose(tape.gradient(loss_fused, fused.gamma), tape.gradient(loss_stock, stock.gamma),
                               rtol=1e-4, atol=1e-3)
    for a, b in zip(fused.get_weights(), stock.get_weights()):  # moving mean and variance updated alike
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    if training:
        assert not np.allclose(stock.moving_mean.numpy(), _pair(shape)[0].moving_mean.numpy())


def test_fused_model_trains_to_the_same_weights_and_saves_stock_layers(tmp_path: Path) -> None:
    def fuse(model: keras.Model) -> None:
        assert use_fused_batch_norm(model) == sum(isinstance(layer, keras.layers.BatchNormalization)
                                                  for layer in model.layers)

    x, models = _trained_without_and_with(lambda: build_model("mini_xception", (48, 48, 1), 7), fuse, 48)
    for a, b in zip(models[0].get_weights(), models[1].get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-2, atol=1e-2)  # 3 SGD steps; thread order differs
    path = tmp_path / "fused.keras"
    models[1].save(path)
    config = json.loads(zipfile.ZipFile(path).read("config.json"))
    classes = {layer["class_name"] for layer in config["config"]["layers"]}
    assert "BatchNormalization" in classes
    assert all(layer["module"].startswith("keras") for layer in config["config"]["layers"])
    reloaded = keras.models.load_model(path, safe_mode=True)  # no custom objects needed
    np.testing.assert_allclose(reloaded.predict_on_batch(x), models[1].predict_on_batch(x), atol=1e-5)


@pytest.mark.parametrize("shape, kernel_shape", [((4, 5, 5, 8), (3, 3, 8, 16)), ((3, 4, 6, 5), (3, 5, 5, 7)),
                                                  ((2, 3, 3, 4), (1, 1, 4, 6))])
def test_small_map_convolution_has_the_stock_output_and_gradients(shape: tuple[int, ...],
                                                                  kernel_shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(2)
    x = tf.constant(rng.normal(size=shape).astype(np.float32))
    kernel = tf.Variable(rng.normal(size=kernel_shape).astype(np.float32))
    weights = tf.constant(rng.normal(size=(*shape[:3], kernel_shape[3])).astype(np.float32))
    results = []
    for conv in (lambda a, k: tf.nn.conv2d(a, k, 1, "SAME"), fast_layers._same_conv_small_map):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = conv(x, kernel)
            loss = tf.reduce_sum(y * weights + 0.1 * y * y)
        results.append((y, *tape.gradient(loss, [x, kernel])))
    for fast, stock in zip(results[1], results[0]):
        np.testing.assert_allclose(fast, stock, rtol=1e-5, atol=1e-4)


def test_small_map_convolutions_take_only_the_small_bfloat16_maps_and_train_alike(tmp_path: Path) -> None:
    mixed = _bfloat16_vgg()
    # 44 -> 22 -> 11 -> 5: only the last block's two convolutions work on a map of at most 36 pixels
    assert fast_layers.use_small_map_convolutions(mixed) == 2
    assert fast_layers.use_small_map_convolutions(build_model("vgg", (44, 44, 1), 7, width=16)) == 0  # float32
    # mini_XCEPTION's last convolution (7 classes on a 6x6 map) qualifies by size; it computes in float32
    assert fast_layers.use_small_map_convolutions(build_model("mini_xception", (48, 48, 1), 7), False) == 1

    def speed_up(model: keras.Model) -> None:
        assert fast_layers.use_small_map_convolutions(model, bfloat16_only=False) == 2

    x, models = _trained_without_and_with(lambda: build_model("vgg", (44, 44, 1), 7, width=16), speed_up, 44)
    for a, b in zip(models[0].get_weights(), models[1].get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    path = tmp_path / "fast.keras"
    models[1].save(path)
    config = json.loads(zipfile.ZipFile(path).read("config.json"))
    classes = {layer["class_name"] for layer in config["config"]["layers"]}
    assert "Conv2D" in classes
    plain = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_allclose(plain.predict_on_batch(x), models[1].predict_on_batch(x), atol=1e-6)


def test_precision_auto_follows_hardware_and_architecture(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fast_layers, "hardware_bf16", lambda: "avx512_bf16")
    assert resolve_precision("auto", "vgg")[0] == "bfloat16"
    assert resolve_precision("auto", "mini_xception")[0] == "float32"  # separable convs gain nothing
    monkeypatch.setattr(fast_layers, "hardware_bf16", lambda: None)
    assert resolve_precision("auto", "vgg")[0] == "float32"
    assert resolve_precision("bfloat16", "mini_xception")[0] == "bfloat16"
    with pytest.raises(ValueError, match="--precision"):
        resolve_precision("fp8", "vgg")


def test_float32_copy_of_a_bfloat16_model_predicts_alike() -> None:
    mixed = _bfloat16_vgg()
    copy = float32_copy(mixed)
    assert {layer.dtype_policy.name for layer in copy.layers} == {"float32"}
    x = np.random.default_rng(0).normal(size=(4, 44, 44, 1)).astype(np.float32)
    np.testing.assert_allclose(copy.predict_on_batch(x), mixed.predict_on_batch(x), atol=0.02)


def test_a_bfloat16_crop_run_saves_a_float32_stock_model_that_the_safe_loader_reads(tmp_path: Path) -> None:
    from app.core.training.engine import TrainConfig, train

    out = tmp_path / "run"
    result = train(TrainConfig(data=str(DATA), out=str(out), arch="vgg", width=16, crop=40, epochs=1,
                               batch_size=32, precision="bfloat16", optimizer="sgd", lr=0.01))
    assert result.best_model is not None
    with h5py.File(result.best_model) as h5:
        config = json.loads(h5.attrs["model_config"])
    assert "bfloat16" not in json.dumps(config)
    loaded = load_model(result.best_model)
    assert loaded.spec.input_size == (40, 40) and loaded.spec.crop_from == (48, 48)
    assert loaded.spec.tta == "crops" and loaded.spec.temperature > 0
    assert loaded.spec.info["precision"] == "bfloat16"
    assert (out / "calibration_reliability.png").stat().st_size > 0
    plain = keras.models.load_model(out / "last.keras", safe_mode=True)  # the training state is stock too
    assert plain.input_shape == (None, 40, 40, 1)


def test_a_resumed_bfloat16_run_keeps_the_small_map_convolutions(tmp_path: Path) -> None:
    """The resumed model is loaded from last.keras with stock calls: the fast paths are put back on it."""
    out = tmp_path / "run"
    starts = []
    for args in (["--epochs", "1"], ["--epochs", "2", "--resume", str(out)]):
        command = [sys.executable, "-m", "app.cli", "train", "--events", "jsonl", *args]
        if "--resume" not in args:
            command[4:4] = [str(DATA), "--out", str(out), "--arch", "vgg", "--width", "16", "--crop", "40",
                            "--batch-size", "32", "--precision", "bfloat16", "--optimizer", "sgd"]
        proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        starts.append(next(json.loads(line) for line in proc.stdout.splitlines()
                           if line.startswith("{") and json.loads(line)["event"] == "start"))
    # 40 -> 20 -> 10 -> 5: the last block's two convolutions; batch norm fused in all nine layers
    assert [start["small_map_convolutions"] for start in starts] == [2, 2]
    assert [start["fused_batch_norm"] for start in starts] == [9, 9]
    assert starts[1]["initial_epoch"] == 1


def test_one_warp_augmentation_agrees_between_tensorflow_and_numpy() -> None:
    images = np.random.default_rng(0).uniform(-1, 1, (4, 48, 48, 1)).astype(np.float32)
    still = Augmentation(flip=False, rotation_deg=0.0, shift=0.0, zoom=0.0, crop=None)
    seed = tf.constant([0, 1], tf.int64)
    np.testing.assert_allclose(augment_batch_tf(tf.constant(images), still, seed).numpy(), images, atol=1e-5)
    np.testing.assert_allclose(augment_batch_np(images, still, np.random.default_rng(0)), images, atol=1e-5)
    cropped = Augmentation(flip=False, rotation_deg=0.0, shift=0.0, zoom=0.0, crop=(44, 44))
    assert augment_batch_tf(tf.constant(images), cropped, seed).shape == (4, 44, 44, 1)
    assert augment_batch_np(images, cropped, np.random.default_rng(0)).shape == (4, 44, 44, 1)
    moved = augment_batch_np(images, Augmentation.from_strength(1.0, (44, 44)), np.random.default_rng(1))
    assert not np.allclose(moved, center_crop(images, (44, 44)))


def test_center_crop() -> None:
    images = np.arange(2 * 6 * 6).reshape(2, 6, 6, 1)
    np.testing.assert_array_equal(center_crop(images, (4, 4)), images[:, 1:5, 1:5])
    assert center_crop(images, None) is images
    with pytest.raises(ValueError):
        center_crop(images, (8, 8))


def test_cosine_schedule_warms_up_decays_and_depends_only_on_the_position() -> None:
    peak, epochs, steps = 0.1, 10, 100
    rates = [cosine_learning_rate(step, peak, epochs, steps) for step in range(epochs * steps)]
    assert rates[0] == 0.0 and max(rates) == pytest.approx(peak, rel=1e-3)
    assert int(np.argmax(rates)) == 100  # warm-up: 10% of the run
    assert rates[-1] == pytest.approx(peak * 0.01, rel=0.05)
    # an extended run (--resume --epochs 20) is back above the old floor at the old end
    assert cosine_learning_rate(999, peak, 20, steps) > 10 * rates[-1]


def test_weight_decay_from_the_command_line_is_decoupled_and_scaled_by_the_learning_rate() -> None:
    """``--weight-decay`` reaches SGD as the help text says: each step shrinks a weight by lr x decay, outside
    the momentum (so 0.005 here is about 5e-4 in PyTorch-style recipes, whose decay the momentum multiplies)."""
    import argparse

    from app.commands.train import add_parser, build_config
    from app.core.training.engine import _optimizer

    parser = argparse.ArgumentParser()
    add_parser(parser)
    config = build_config(parser.parse_args(["data.csv", "--out", "run", "--optimizer", "sgd", "--lr", "0.1",
                                             "--weight-decay", "0.005"]))
    assert config.weight_decay == 0.005
    optimizer = _optimizer(config)
    assert isinstance(optimizer, keras.optimizers.SGD) and optimizer.nesterov and optimizer.momentum == 0.9
    weight = keras.Variable(np.full((3,), 2.0, np.float32))
    zero = np.zeros((3,), np.float32)  # no gradient: only the decay moves the weight
    for step in (1, 2):
        optimizer.apply_gradients([(zero, weight)])
        # The same factor again on step 2: none of step 1's decay was carried in the momentum.
        np.testing.assert_allclose(np.asarray(weight), 2.0 * (1 - 0.1 * 0.005) ** step, rtol=1e-6)
