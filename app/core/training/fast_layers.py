"""Fast training on the CPU without custom layers: fused batch norm and bfloat16, saved as stock Keras.

Keras 3's ``BatchNormalization`` runs on TensorFlow as a chain of element-wise ops (moments, then the
normalisation), which costs most of a small net's training step on a CPU. TensorFlow's fused kernel
(``FusedBatchNormV3``) does the same maths in one op, forward and backward: ``use_fused_batch_norm`` points
each stock ``BatchNormalization`` layer of a model at it. The layer objects stay stock ``BatchNormalization``
(same class, config and weights), so every file saved from the model holds only stock Keras layers and
loads anywhere without custom objects. On other backends nothing changes.

The maths is the stock layer's: the batch variance used for normalising is the biased one, and the
moving statistics get ``moving * momentum + batch * (1 - momentum)`` with the biased batch variance (the
fused kernel returns the unbiased one, which is converted back). tests/test_fast_training.py checks
outputs, gradients and moving statistics against the stock layer.

``precision_policy`` chooses float32 or mixed bfloat16 (``--precision auto|float32|bfloat16``); ``auto``
takes bfloat16 only where the hardware runs it natively (AVX512-BF16 or AMX on the CPU, or a GPU) and
the architecture gains from it (ordinary convolutions; depthwise-separable ones run slower).
``float32_copy`` rebuilds a mixed-precision model in float32 with the same weights, for saving.

``combine_shard_moments`` lets a step that runs the model once per shard of its batch (batch_shards) update
the moving statistics once, with the whole batch's moments.

``use_small_map_convolutions`` computes the kernel gradient of bfloat16 convolutions on small maps (a
VGG's last block) as a forward convolution, which oneDNN runs 2-3x faster than its own backward kernel there.
"""

from __future__ import annotations

import contextlib
import logging
import types
from pathlib import Path
from typing import Any, Iterator

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "float32", "bfloat16")
_CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def nested_layers(model: Any) -> Iterator[Any]:
    """Every layer of ``model``, nested models' layers included (the trainer wraps the architecture; an
    ensemble holds its members); nothing for an object without layers."""
    for layer in getattr(model, "layers", ()):
        yield layer
        if hasattr(layer, "layers"):
            yield from nested_layers(layer)


def _fused_call(self: Any, inputs: Any, training: Any = None, mask: Any = None) -> Any:
    """BatchNormalization.call through TensorFlow's fused kernel (bound to a stock layer instance)."""
    import tensorflow as tf

    rank = len(inputs.shape)
    channels = inputs.shape[-1]
    if (mask is not None or self.renorm or self.synchronized or rank not in (2, 4)
            or self.axis not in (-1, rank - 1) or channels is None):
        return type(self).call(self, inputs, training=training, mask=mask)
    x = inputs if inputs.dtype in (tf.float32, tf.bfloat16, tf.float16) else tf.cast(inputs, tf.float32)
    if rank == 2:
        x = tf.reshape(x, [-1, 1, 1, channels])
    scale = self.gamma if self.scale else tf.ones([channels], tf.float32)
    offset = self.beta if self.center else tf.zeros([channels], tf.float32)
    scale, offset = tf.cast(scale, tf.float32), tf.cast(offset, tf.float32)
    if training and self.trainable:
        empty = tf.constant([], tf.float32)
        y, mean, variance, *_ = tf.raw_ops.FusedBatchNormV3(
            x=x, scale=scale, offset=offset, mean=empty, variance=empty, epsilon=self.epsilon,
            exponential_avg_factor=1.0, data_format="NHWC", is_training=True)
        # The kernel returns the unbiased batch variance; the stock layer averages the biased one.
        n = tf.cast(tf.size(x) // channels, tf.float32)
        variance = variance * (n - 1.0) / tf.maximum(n, 1.0)
        shard_moments = getattr(self, "_fer_shard_moments", None)
        if shard_moments is not None:  # a sharded step updates the moving statistics once, for the whole batch
            shard_moments.append((mean, variance))
        else:
            _update_moving_statistics(self, mean, variance)
    else:
        y, *_ = tf.raw_ops.FusedBatchNormV3(
            x=x, scale=scale, offset=offset, mean=tf.cast(self.moving_mean, tf.float32),
            variance=tf.cast(self.moving_variance, tf.float32), epsilon=self.epsilon,
            exponential_avg_factor=1.0, data_format="NHWC", is_training=False)
    if rank == 2:
        y = tf.reshape(y, tf.shape(inputs))
    return tf.cast(y, self.compute_dtype)


def _update_moving_statistics(layer: Any, mean: Any, variance: Any) -> None:
    momentum = layer.momentum
    layer.moving_mean.assign(layer.moving_mean * momentum + mean * (1.0 - momentum))
    layer.moving_variance.assign(layer.moving_variance * momentum + variance * (1.0 - momentum))


def _pooled_moments(parts: list[tuple[Any, Any]]) -> tuple[Any, Any]:
    """The mean and biased variance of equal-sized parts pooled, from each part's mean and biased variance."""
    import tensorflow as tf

    mean = tf.add_n([m for m, _ in parts]) / len(parts)
    mean_square = tf.add_n([v + tf.square(m) for m, v in parts]) / len(parts)
    return mean, mean_square - tf.square(mean)


@contextlib.contextmanager
def combine_shard_moments(model: Any) -> Iterator[None]:
    """While a training step calls ``model`` once per shard of its batch (batch_shards), the fused batch-norm
    layers keep each shard's moments; at the end each layer's moving statistics are updated once, with the
    whole batch's mean and biased variance, as one call on the whole batch would."""
    layers = [layer for layer in nested_layers(model)
              if getattr(getattr(layer, "call", None), "__func__", None) is _fused_call]
    for layer in layers:  # plain attributes (object.__setattr__): not tracked by Keras
        object.__setattr__(layer, "_fer_shard_moments", [])
    try:
        yield
        for layer in layers:
            if layer._fer_shard_moments:
                _update_moving_statistics(layer, *_pooled_moments(layer._fer_shard_moments))
    finally:
        for layer in layers:
            object.__delattr__(layer, "_fer_shard_moments")


def use_fused_batch_norm(model: Any) -> int:
    """Run every BatchNormalization layer of ``model`` (nested models too) through TF's fused kernel.

    Only the bound ``call`` of each layer instance changes, not its class, config or weights. Returns how
    many layers now use it (0 on backends other than TensorFlow, where the stock layer is kept).
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        return 0
    count = 0
    for layer in nested_layers(model):
        if type(layer) is keras.layers.BatchNormalization:
            layer.call = types.MethodType(_fused_call, layer)
            count += 1
    return count


# ------------------------------------------------------------------------------ small-map convolutions

#: Output maps of at most this many pixels (the 5x5 of a VGG's last block on 44x44 crops) take the
#: filter gradient below; larger ones keep oneDNN's own kernel, which is faster there.
SMALL_MAP_PIXELS = 36


def _same_conv_small_map(x: Any, kernel: Any) -> Any:
    """``conv2d(x, kernel, stride 1, "SAME")`` whose kernel gradient is computed as one forward convolution.

    oneDNN's ``Conv2DBackpropFilter`` in bfloat16 is 2-4x slower than a forward convolution of the same
    size when the map is small (5x5x512 on a batch of 64: 32 ms against 10 ms here). The kernel gradient
    ``dK[i, j, c, o] = sum_{n, h, w} x_pad[n, h + i, w + j, c] * dy[n, h, w, o]`` is a VALID convolution of
    the padded input with the batch as its channels (input ``x_pad`` as (c, H+kh-1, W+kw-1, n)) by the
    output gradient as the filter ((H, W, n, o)), which runs on the fast forward path. Same maths; the
    forward pass and the input gradient are TensorFlow's own.
    """
    import tensorflow as tf

    @tf.custom_gradient
    def conv(x: Any, kernel: Any) -> Any:
        y = tf.nn.conv2d(x, kernel, strides=1, padding="SAME")

        def grad(dy: Any) -> tuple[Any, Any]:
            dx = tf.raw_ops.Conv2DBackpropInput(input_sizes=tf.shape(x), filter=kernel, out_backprop=dy,
                                                strides=[1, 1, 1, 1], padding="SAME")
            kh, kw = kernel.shape[0], kernel.shape[1]
            top, left = (kh - 1) // 2, (kw - 1) // 2
            padded = tf.pad(x, [[0, 0], [top, kh - 1 - top], [left, kw - 1 - left], [0, 0]])
            dk = tf.nn.conv2d(tf.transpose(padded, [3, 1, 2, 0]), tf.transpose(dy, [1, 2, 0, 3]),
                              strides=1, padding="VALID")
            return dx, tf.transpose(dk, [1, 2, 0, 3])

        return y, grad

    return conv(x, kernel)


def _small_map_convolution_op(self: Any, inputs: Any, kernel: Any) -> Any:
    return _same_conv_small_map(inputs, kernel)


def _takes_small_map_gradient(layer: Any, bfloat16_only: bool) -> bool:
    import keras

    if type(layer) is not keras.layers.Conv2D:
        return False
    if (tuple(layer.strides) != (1, 1) or tuple(layer.dilation_rate) != (1, 1) or layer.groups != 1
            or layer.padding != "same" or layer.data_format != "channels_last"
            or any(k % 2 == 0 for k in layer.kernel_size)):
        return False
    if bfloat16_only and layer.compute_dtype != "bfloat16":
        return False
    try:
        height, width = layer.input.shape[1:3]
    except (AttributeError, ValueError):  # a layer not called in a functional model
        return False
    return height is not None and width is not None and height * width <= SMALL_MAP_PIXELS


def use_small_map_convolutions(model: Any, bfloat16_only: bool = True) -> int:
    """Compute the kernel gradient of ``model``'s small-map convolutions as a forward convolution.

    Applies to stock ``Conv2D`` layers (nested models too) with odd kernels, stride 1, "same" padding and an
    output of at most SMALL_MAP_PIXELS pixels, computing in bfloat16 unless ``bfloat16_only`` is False (in
    float32 oneDNN's own kernel is the faster one: 32 ms against 55 ms for 5x5x512 on a batch of 64). Only
    the bound ``convolution_op`` of each layer instance changes, so saved files hold stock layers.
    TensorFlow only; returns how many layers use it.
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        return 0
    count = 0
    for layer in nested_layers(model):
        if _takes_small_map_gradient(layer, bfloat16_only):
            layer.convolution_op = types.MethodType(_small_map_convolution_op, layer)
            count += 1
    return count


# ---------------------------------------------------------------------------------------------- precision

#: Architectures whose step gains from bfloat16 (ordinary convolutions run on AVX512-BF16/AMX); the
#: depthwise-separable mini_XCEPTIONs run slower in it on this class of CPU.
BF16_GAINS = {"vgg", "vgg_small", "simple_cnn", "resnet50"}


def hardware_bf16() -> str | None:
    """Why this machine runs bfloat16 natively ("GPU", "amx_bf16", "avx512_bf16"), or None."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        if any(d.platform == "gpu" for d in jax.devices()):
            return "GPU"
    elif keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if tf.config.list_physical_devices("GPU"):
            return "GPU"
    try:
        flags = set(Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace").split())
    except OSError:
        return None
    return next((flag for flag in _CPU_BF16_FLAGS[::-1] if flag in flags), None)


def resolve_precision(precision: str, arch: str) -> tuple[str, str]:
    """("float32" | "bfloat16", why) for ``--precision`` and an architecture."""
    if precision not in PRECISIONS:
        raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision != "auto":
        return precision, "asked for"
    native = hardware_bf16()
    if native is None:
        return "float32", "no native bfloat16 on this machine"
    if arch not in BF16_GAINS:
        return "float32", f"{arch} gains nothing from bfloat16 (depthwise-separable convolutions)"
    return "bfloat16", f"native bfloat16 ({native}) and {arch} gains from it"


def keras_policy(precision: str) -> str:
    return "mixed_bfloat16" if precision == "bfloat16" else "float32"


def float32_copy(model: Any) -> Any:
    """The model rebuilt with every layer in float32 and the same weights (itself if already float32)."""
    import keras

    if all(layer.dtype_policy.name == "float32" for layer in nested_layers(model)):
        return model

    def rebuild(layer: Any) -> Any:
        config = layer.get_config()
        config["dtype"] = "float32"
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=rebuild)
    copy.set_weights(model.get_weights())
    return copy
