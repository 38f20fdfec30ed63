"""Model architectures, in Keras layers only (so they train under the TensorFlow, JAX or PyTorch backend).

- ``mini_xception``: the reference (Arriaga et al. 2017, "Real-time Convolutional Neural Networks for
  Emotion and Gender Classification"): depthwise-separable residual modules, ~60k parameters.
- ``mini_xception_wide``: the same shape with twice the filters, for more accuracy at small cost.
- ``simple_cnn``: the second reference post's net: three 5x5 conv blocks with batch norm and dropout,
  then three dense layers.
- ``vgg``: a VGG-style net for 48x48 (four double-conv blocks), the larger, more accurate choice.
- ``resnet50``: keras.applications.ResNet50 without pretrained weights, as the first reference tried.

``l2`` (``fer-studio train --l2``) sets the L2 penalty on the convolution (and dense) kernels: mini_xception
uses the reference's 0.01 by default, mini_xception_wide 0.001, simple_cnn and vgg none; resnet50 takes none.
``dropout_scale`` (``--dropout-scale``) multiplies the dropout rates of simple_cnn and vgg; 0 leaves their
dropout layers out (a short schedule that under-fits needs less regularisation than a 300-epoch one).
"""

from __future__ import annotations

from typing import Callable

import keras
from keras import layers, regularizers

from app.core.training.arch_defaults import (
    DEFAULT_L2,
    DEFAULT_WIDTH,
    MAX_DROPOUT_SCALE,
    TAKES_DROPOUT_SCALE,
    takes_width,
)

InputShape = tuple[int, int, int]


def _kernel_l2(l2: float) -> regularizers.Regularizer | None:
    return regularizers.l2(l2) if l2 > 0 else None


def _dropout(x: keras.KerasTensor, rate: float, scale: float) -> keras.KerasTensor:
    """``Dropout(rate * scale)`` after ``x``; no layer at all when that rate is 0."""
    return layers.Dropout(rate * scale)(x) if rate * scale > 0 else x


def _mini_xception(input_shape: InputShape, num_classes: int, width: int, l2: float) -> keras.Model:
    reg = _kernel_l2(l2)
    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Conv2D(8 * width, 3, use_bias=False, kernel_regularizer=reg)(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    x = layers.Conv2D(8 * width, 3, use_bias=False, kernel_regularizer=reg)(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    for filters in (16, 32, 64, 128):
        filters *= width
        residual = layers.Conv2D(filters, 1, strides=2, padding="same", use_bias=False)(x)
        residual = layers.BatchNormalization()(residual)
        x = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False, depthwise_regularizer=reg,
                                   pointwise_regularizer=reg)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False, depthwise_regularizer=reg,
                                   pointwise_regularizer=reg)(x)
        x = layers.BatchNormalization()(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
        x = layers.Add()([x, residual])
    x = layers.Conv2D(num_classes, 3, padding="same")(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Activation("softmax", name="predictions")(x)
    name = "mini_xception" if width == 1 else f"mini_xception_x{width}"
    return keras.Model(inputs, outputs, name=name)


def mini_xception(input_shape: InputShape, num_classes: int, l2: float = DEFAULT_L2["mini_xception"]) -> keras.Model:
    return _mini_xception(input_shape, num_classes, width=1, l2=l2)


def mini_xception_wide(input_shape: InputShape, num_classes: int,
                       l2: float = DEFAULT_L2["mini_xception_wide"]) -> keras.Model:
    return _mini_xception(input_shape, num_classes, width=2, l2=l2)


def simple_cnn(input_shape: InputShape, num_classes: int, l2: float = DEFAULT_L2["simple_cnn"],
               dropout_scale: float = 1.0) -> keras.Model:
    reg = _kernel_l2(l2)
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    for filters in (64, 128, 256):
        x = layers.Conv2D(filters, 5, padding="same", use_bias=False, kernel_regularizer=reg)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.MaxPooling2D(2)(x)
        x = _dropout(x, 0.25, dropout_scale)
    x = layers.Flatten()(x)
    for units in (256, 128):
        x = layers.Dense(units, use_bias=False, kernel_regularizer=reg)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = _dropout(x, 0.4, dropout_scale)
    outputs = layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="simple_cnn")


def vgg(input_shape: InputShape, num_classes: int, l2: float = DEFAULT_L2["vgg"],
        width: int = DEFAULT_WIDTH["vgg"], dropout_scale: float = 1.0) -> keras.Model:
    """Four double-conv blocks of ``width``, 2x, 4x and 8x filters, then a dense layer of 8x ``width``.

    Width 64 is the 4.96M-parameter net; width 32 (1.24M) trains about 4x faster and, on random 44x44
    crops of FER2013 faces, is the published VGG-style recipe's size. Widths that are multiples of 16 keep
    oneDNN's bfloat16 convolutions on their fast path.
    """
    reg = _kernel_l2(l2)
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    for filters, dropout in ((width, 0.2), (2 * width, 0.25), (4 * width, 0.3), (8 * width, 0.35)):
        for _ in range(2):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_regularizer=reg)(x)
            x = layers.BatchNormalization()(x)
            x = layers.Activation("relu")(x)
        x = layers.MaxPooling2D(2)(x)
        x = _dropout(x, dropout, dropout_scale)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(8 * width, use_bias=False, kernel_regularizer=reg)(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    x = _dropout(x, 0.5, dropout_scale)
    # float32 output under a mixed-precision policy, so the loss and the probabilities are exact.
    outputs = layers.Dense(num_classes, activation="softmax", name="predictions", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="vgg" if width == 64 else f"vgg_w{width}")


def resnet50(input_shape: InputShape, num_classes: int) -> keras.Model:
    if min(input_shape[:2]) < 32:
        raise ValueError("resnet50 needs inputs of at least 32x32")
    return keras.applications.ResNet50(weights=None, input_shape=input_shape, classes=num_classes,
                                       classifier_activation="softmax", name="resnet50")


ARCHITECTURES: dict[str, Callable[..., keras.Model]] = {
    "mini_xception": mini_xception,
    "mini_xception_wide": mini_xception_wide,
    "simple_cnn": simple_cnn,
    "vgg": vgg,
    "resnet50": resnet50,
}


def build_model(arch: str, input_shape: InputShape = (48, 48, 1), num_classes: int = 7,
                l2: float | None = None, width: int | None = None,
                dropout_scale: float | None = None) -> keras.Model:
    """Build an untrained model by name; ``l2`` / ``width`` / ``dropout_scale`` None keep the architecture's
    own (DEFAULT_L2, DEFAULT_WIDTH, its dropout rates).

    Raises ValueError for an unknown name, a negative ``l2``, an ``l2`` for an architecture without one,
    a ``width`` for an architecture that takes none, or a ``dropout_scale`` out of range or for an
    architecture without dropout.
    """
    try:
        factory = ARCHITECTURES[arch]
    except KeyError:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}") from None
    check_l2(arch, l2)
    check_width(arch, width)
    check_dropout_scale(arch, dropout_scale)
    options: dict[str, float | int] = {} if l2 is None else {"l2": float(l2)}
    if width is not None:
        options["width"] = int(width)
    if dropout_scale is not None:
        options["dropout_scale"] = float(dropout_scale)
    return factory(tuple(input_shape), int(num_classes), **options)


def check_l2(arch: str, l2: float | None) -> None:
    """Raise ValueError when ``l2`` cannot be used with ``arch`` (None always can)."""
    if l2 is None:
        return
    if arch not in DEFAULT_L2:
        raise ValueError(f"--l2 does not apply to {arch}; it applies to {', '.join(DEFAULT_L2)}")
    if not l2 >= 0:
        raise ValueError(f"--l2 must be 0 or more, not {l2}")


def check_width(arch: str, width: int | None) -> None:
    """Raise ValueError when ``width`` cannot be used with ``arch`` (None always can)."""
    if width is None:
        return
    if not takes_width(arch):
        raise ValueError(f"--width does not apply to {arch}; it applies to {', '.join(DEFAULT_WIDTH)}")
    if not 8 <= width <= 512:
        raise ValueError(f"--width must be between 8 and 512, not {width}")


def check_dropout_scale(arch: str, scale: float | None) -> None:
    """Raise ValueError when ``scale`` cannot be used with ``arch`` (None always can)."""
    if scale is None:
        return
    if arch not in TAKES_DROPOUT_SCALE:
        raise ValueError(f"--dropout-scale does not apply to {arch}, which has no dropout; it applies to "
                         f"{', '.join(TAKES_DROPOUT_SCALE)}")
    if not 0 <= scale <= MAX_DROPOUT_SCALE:
        raise ValueError(f"--dropout-scale must be between 0 and {MAX_DROPOUT_SCALE:g}, not {scale}")
