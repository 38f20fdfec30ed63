"""The precision the classifier runs a model at: bfloat16 where the CPU computes it natively, float32 elsewhere.

On CPUs with AMX or AVX512-BF16, oneDNN runs bfloat16 convolutions several times faster than float32 ones:
the bundled width-32 VGG (44x44 crops) classifies 8 faces in 3.4 ms instead of 10.1 ms, the photo ensemble
with ten crops in 177 ms instead of 1,036 ms (``bench/classifier.py --threads 1``, 2-core Xeon with AMX).
Depthwise-separable nets (mini_XCEPTION) run slower in it, so ``auto``
keeps them, and every model on a machine without native bfloat16, in float32.

Only the compute-heavy layers change (convolutions, batch norm, pooling, activations, hidden dense layers);
the input-side layers, every softmax output and what follows it (an ensemble's average) stay float32, so
probabilities keep float32's resolution. Weights stay float32: the bfloat16 copy casts them per call.
Batch normalisation right after a convolution or dense layer is folded into that layer's kernel and bias
first (in float32, exact up to rounding): TensorFlow's graph optimiser does that itself for float32 graphs,
not across bfloat16 casts, where it cost about 30% of a width-32 VGG's call. Accuracy moves by a few faces
in a thousand (measured per model on its card).
"""

from __future__ import annotations

import logging
from typing import Any

from app.core.training.fast_layers import nested_layers

logger = logging.getLogger(__name__)

PRECISIONS: tuple[str, ...] = ("auto", "float32", "bfloat16")

#: Layers that compute in bfloat16 in a bfloat16 copy (a Dense or Activation only without softmax).
_BFLOAT16_LAYERS = ("Conv2D", "BatchNormalization", "Activation", "ReLU", "MaxPooling2D", "AveragePooling2D",
                    "GlobalAveragePooling2D", "Dropout", "Flatten", "Dense")
_DEPTHWISE_LAYERS = ("DepthwiseConv2D", "SeparableConv2D")


def _softmax(layer: Any) -> bool:
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", "") == "softmax" or type(layer).__name__ == "Softmax"


def gains_from_bfloat16(model: Any) -> bool:
    """True for nets of ordinary convolutions (VGG- and ResNet-style); False with any depthwise convolution."""
    kinds = [type(layer).__name__ for layer in nested_layers(model)]
    return "Conv2D" in kinds and not any(kind in _DEPTHWISE_LAYERS for kind in kinds)


def resolve_inference_precision(model: Any, precision: str = "auto") -> tuple[str, str]:
    """("float32" | "bfloat16", why) for running ``model`` at ``precision`` (auto, float32 or bfloat16)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision != "auto":
        return precision, "asked for"
    import keras

    if keras.backend.backend() != "tensorflow":
        return "float32", f"auto keeps float32 on the {keras.backend.backend()} backend"
    from app.core.training.fast_layers import hardware_bf16

    native = hardware_bf16()
    if native is None:
        return "float32", "no native bfloat16 on this machine"
    if native == "GPU":
        return "float32", "auto keeps float32 on a GPU"
    if not gains_from_bfloat16(model):
        return "float32", "the model has depthwise convolutions, which gain nothing from bfloat16"
    return "bfloat16", f"native bfloat16 ({native}) and ordinary convolutions"


def _runs_in_bfloat16(layer: Any) -> bool:
    return type(layer).__name__ in _BFLOAT16_LAYERS and not _softmax(layer)


def _producer(layer: Any) -> Any:
    try:
        return layer.input._keras_history.operation
    except (AttributeError, ValueError):  # no single input (a merge), or not called in a functional model
        return None


def _foldable_pairs(model: Any) -> dict[int, Any]:
    """id(layer) -> layer for each Conv2D / Dense followed only by a channels-last BatchNormalization, and for
    that BatchNormalization (nested models too)."""
    import keras

    pairs: dict[int, Any] = {}
    for layer in nested_layers(model):
        if type(layer) is not keras.layers.BatchNormalization:
            continue
        producer = _producer(layer)
        if type(producer) not in (keras.layers.Conv2D, keras.layers.Dense):
            continue
        axis = layer.axis if isinstance(layer.axis, int) else -1
        rank = len(layer.input.shape)
        if (len(producer._inbound_nodes) == 1 and len(producer._outbound_nodes) == 1  # not a shared layer
                and getattr(producer.activation, "__name__", "") == "linear"  # BN after a ReLU does not fold
                and axis in (-1, rank - 1) and getattr(producer, "data_format", "channels_last") == "channels_last"):
            pairs[id(producer)] = producer
            pairs[id(layer)] = layer
    return pairs


def _folded_weights(producer: Any, norm: Any) -> list[Any]:
    """[kernel, bias] of ``producer`` with the inference-mode ``norm`` after it folded in (float32 maths)."""
    import numpy as np

    weights = {w.path.split("/")[-1]: np.asarray(w.numpy(), np.float64) for w in norm.weights}
    channels = weights["moving_mean"].shape[0]
    gamma = weights.get("gamma", np.ones(channels))
    beta = weights.get("beta", np.zeros(channels))
    scale = gamma / np.sqrt(weights["moving_variance"] + norm.epsilon)
    kernel = np.asarray(producer.kernel.numpy(), np.float64) * scale  # the last axis is the output channel
    bias = np.asarray(producer.bias.numpy(), np.float64) if producer.use_bias else np.zeros(channels)
    return [kernel.astype(np.float32), ((bias - weights["moving_mean"]) * scale + beta).astype(np.float32)]


def _pass_through(name: str, policy: str) -> Any:
    """A layer that returns its input, where a folded batch norm was, in the producer's policy (no casts to
    float32 and back). Keras' Identity refuses the ``mask`` argument a batch norm's call was recorded with;
    this copy is only run, never saved, so a local layer class is fine."""
    import keras

    class FoldedBatchNorm(keras.layers.Layer):
        def call(self, inputs: Any, training: Any = None, mask: Any = None) -> Any:
            return inputs

    return FoldedBatchNorm(name=name, dtype=policy)


def inference_copy(model: Any, policy: str = "mixed_bfloat16") -> Any:
    """``model`` for inference with its compute-heavy layers under ``policy`` (nested models too): batch norms
    after a Conv2D or Dense folded into it, every other weight as it was; softmax outputs, merges and
    input-side layers stay float32."""
    import keras

    folded = _foldable_pairs(model)

    def rebuild(layer: Any) -> Any:
        heavy = _runs_in_bfloat16(layer)
        if id(layer) in folded and type(layer) is keras.layers.BatchNormalization:
            return _pass_through(layer.name, policy)
        config = layer.get_config()
        if id(layer) in folded:
            config["use_bias"] = True
        if heavy:
            config["dtype"] = policy
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=rebuild, recursive=True)
    _copy_weights(model, copy, folded)
    return copy


def bfloat16_copy(model: Any) -> Any:
    """``inference_copy`` in mixed bfloat16: what the classifier runs on native-bfloat16 CPUs."""
    return inference_copy(model, "mixed_bfloat16")


def _copy_weights(source: Any, target: Any, folded: dict[int, Any]) -> None:
    """Weights of ``source`` into its clone ``target``, layer by layer (the clone keeps the layer order)."""
    import keras

    layers = list(source.layers)
    for index, (mine, theirs) in enumerate(zip(layers, target.layers)):
        if hasattr(mine, "layers"):
            _copy_weights(mine, theirs, folded)
        elif id(mine) in folded and type(mine) is not keras.layers.BatchNormalization:
            norm = next(layer for layer in layers[index + 1:] if _producer(layer) is mine)
            theirs.set_weights(_folded_weights(mine, norm))
        elif mine.weights and id(mine) not in folded:
            theirs.set_weights(mine.get_weights())


def at_precision(model: Any, precision: str) -> tuple[Any, str]:
    """(the model to run, its precision): ``model`` itself for float32, its bfloat16 copy for bfloat16, and
    ``model`` in float32 when it cannot be copied (logged)."""
    if precision != "bfloat16":
        return model, "float32"
    try:
        return bfloat16_copy(model), "bfloat16"
    except Exception as exc:  # noqa: BLE001 - an exotic model still runs, in float32
        logger.warning("running the model in float32: cannot make a bfloat16 copy (%s: %s)", type(exc).__name__, exc)
        return model, "float32"
