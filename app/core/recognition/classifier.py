"""Batched, compiled emotion inference: all faces of one image in one call of a traced ``tf.function``.

The function has a fixed input signature ``[None, H, W, C] float32``, so it is traced once and every
later call, whatever the number of faces, reuses the graph (no ``model.predict`` set-up per call, no
per-face calls). The traced graph is then frozen (weights as constants) so TensorFlow's graph optimiser
can fold batch-norm into the convolutions. Test-time augmentation adds each face's mirror image to the
same batch and averages the two predictions.

The classifier holds a Keras model: create it, and call it, in the one thread that uses it (the camera
worker creates its own inside its thread).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import cv2
import numpy as np

from app.core.model_io import LoadedModel, ModelSpec, normalise_pixels

logger = logging.getLogger(__name__)


class EmotionClassifier:
    """Turn BGR face crops of any size into class probabilities with one compiled model call."""

    def __init__(self, loaded: LoadedModel, tta: bool = False, warm_up: bool = True) -> None:
        import tensorflow as tf

        self.loaded = loaded
        self.spec: ModelSpec = loaded.spec
        self.tta = bool(tta)
        height, width = self.spec.input_size
        model = loaded.model

        # One trace for every batch size; training=False keeps dropout/batch-norm in inference mode.
        @tf.function(input_signature=[tf.TensorSpec([None, height, width, self.spec.channels], tf.float32)])
        def infer(batch: tf.Tensor) -> tf.Tensor:
            return model(batch, training=False)

        self._infer = infer
        self._run = _frozen(infer, tf) or infer
        if warm_up:
            self.predict([np.zeros((height, width, 3), np.uint8)])  # trace now, not on the first frame

    @property
    def labels(self) -> tuple[str, ...]:
        return self.spec.labels

    @property
    def num_classes(self) -> int:
        return len(self.spec.labels)

    def preprocess(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Face crops (BGR, BGRA or grey uint8, any size) -> normalised (N, H, W, C) float32 batch."""
        height, width = self.spec.input_size
        channels = self.spec.channels
        batch = np.empty((len(crops), height, width, channels), np.float32)
        for i, crop in enumerate(crops):
            batch[i] = normalise_pixels(_fit(crop, height, width, channels), self.spec.normalization)
        return batch

    def predict(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Probabilities (N, num_classes), rows in the order of ``crops``; (0, num_classes) for none."""
        if len(crops) == 0:
            return np.zeros((0, self.num_classes), np.float32)
        batch = self.preprocess(crops)
        if self.tta:
            batch = np.concatenate([batch, batch[:, :, ::-1, :]])
        output = np.asarray(self._run(batch), dtype=np.float32)
        output = output.reshape(output.shape[0], -1)
        probabilities = as_probabilities(output)
        if self.tta:
            n = len(crops)
            probabilities = (probabilities[:n] + probabilities[n:]) / 2.0
        return probabilities


def set_inference_threads(threads: int) -> bool:
    """Limit TensorFlow to ``threads`` CPU threads per op; must run before TensorFlow's first op.

    On a 2-core machine that also decodes video and detects faces, one thread halves the time of a
    1-face call (bench/classifier.py --threads 1). Returns False (and logs) when it is too late.
    """
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError as exc:
        logger.info("cannot change TensorFlow's threads now (%s)", exc)
        return False
    return True


def _frozen(infer: Any, tf: Any) -> Callable[[np.ndarray], Any] | None:
    """The traced graph with the weights folded in as constants, or None if that fails.

    Grappler can then fold batch-norm into the convolutions and drop the variable reads: about a third
    faster per call on a 2-core CPU for mini_XCEPTION (bench/classifier.py), same numbers to 1e-6.
    """
    try:
        from tensorflow.python.framework.convert_to_constants import (
            convert_variables_to_constants_v2,
        )

        frozen = convert_variables_to_constants_v2(infer.get_concrete_function())
    except Exception as exc:  # noqa: BLE001 - an exotic model still works through the plain tf.function
        logger.info("running the model unfrozen (%s: %s)", type(exc).__name__, exc)
        return None

    def run(batch: np.ndarray) -> Any:
        return tf.nest.flatten(frozen(tf.constant(batch)))[0]

    return run


def _fit(crop: np.ndarray, height: int, width: int, channels: int) -> np.ndarray:
    """One crop -> (height, width, channels) uint8: grey or RGB as the model expects, resized."""
    image = np.asarray(crop)
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if channels == 1:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    else:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB if image.ndim == 2 else cv2.COLOR_BGR2RGB)
    if image.shape[0] != height or image.shape[1] != width:
        shrinking = image.shape[0] > height or image.shape[1] > width
        image = cv2.resize(image, (width, height),
                           interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    return image.reshape(height, width, channels)


def as_probabilities(output: np.ndarray) -> np.ndarray:
    """Rows that already are probabilities pass through; anything else (logits) gets a softmax."""
    rows_sum_to_one = np.allclose(output.sum(axis=1), 1.0, atol=1e-3)
    if rows_sum_to_one and float(output.min(initial=0.0)) >= -1e-6 and float(output.max(initial=0.0)) <= 1 + 1e-6:
        return np.clip(output, 0.0, 1.0)
    shifted = output - output.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)
