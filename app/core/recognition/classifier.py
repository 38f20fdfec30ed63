"""Batched, compiled emotion inference: all faces of one image in one call of a traced ``tf.function``.

The function has a fixed input signature ``[None, H, W, C] float32``, so it is traced once and every
later call, whatever the number of faces, reuses the graph (no ``model.predict`` set-up per call, no
per-face calls). The traced graph is then frozen (weights as constants) so TensorFlow's graph optimiser
can fold batch-norm into the convolutions.

This is the one preprocessing and the one test-time augmentation of the project: the app, ``predict``,
``analyze``, ``evaluate`` and training's own report all go through it (``evaluation.predict_array`` calls
it), so a model card's accuracy is the accuracy of the code the app runs. Each face is resized to the
model's ``crop_from`` size (crop-trained models) or input size, then cut into views:

- ``none``: the centre window (the whole face for models not trained on crops);
- ``flip``: that and its mirror image;
- ``crops``: ten-crop, the four corner windows and the centre one, each also mirrored. Models not trained
  on crops take their windows from the face resized to 12/11 of their input side.

All views of all faces go through the model in one call and each face's views are averaged. Then the
model's fitted temperature (``spec.temperature``, see calibration.py) turns the average into calibrated
probabilities: ``softmax(log(p) / T)``, which never changes the top label.

``precision`` (default ``auto``, see precision.py) runs nets of ordinary convolutions as a bfloat16 copy on
CPUs that compute bfloat16 natively (AMX, AVX512-BF16), batch norms folded: 3-6x faster there (the bundled
default and the photo ensemble), labels equal to float32's on all but a few faces in a thousand.
``classifier.precision`` says what it runs at.

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
from app.core.recognition.precision import at_precision, resolve_inference_precision

logger = logging.getLogger(__name__)


TTA_MODES: tuple[str, ...] = ("none", "flip", "crops")
#: The TTA option that means the model's own (its metadata's; the one its card's accuracy was measured with).
OWN_TTA = "own"
#: A face whose top calibrated probability is below this is shown as "uncertain" (window and CLI option).
DEFAULT_UNCERTAIN_BELOW = 0.4


def tta_mode(tta: bool | str | None) -> str:
    """``True``/``False`` (older callers) or a mode name -> one of TTA_MODES."""
    if tta is None or tta is False:
        return "none"
    if tta is True:
        return "flip"
    mode = str(tta).lower()
    if mode not in TTA_MODES:
        raise ValueError(f"test-time augmentation must be one of {', '.join(TTA_MODES)}, not {tta!r}")
    return mode


def is_uncertain(probabilities: np.ndarray, threshold: float) -> bool:
    """True when the top probability of one face is below ``threshold`` (0 turns the state off)."""
    return bool(len(probabilities)) and float(np.max(probabilities)) < threshold


class EmotionClassifier:
    """Turn face crops of any size into calibrated class probabilities with one compiled model call.

    ``tta``: "none" (or False), "flip" (or True), "crops", or "own": the model's own (its metadata's).
    """

    def __init__(self, loaded: LoadedModel, tta: bool | str = False, warm_up: bool = True,
                 calibrated: bool = True, precision: str = "auto") -> None:
        self.loaded = loaded
        self.spec: ModelSpec = loaded.spec
        self.tta = tta_mode(loaded.spec.tta if tta == OWN_TTA else tta)
        self.temperature = float(self.spec.temperature) if calibrated else 1.0
        if not self.temperature > 0:
            logger.warning("%s: ignoring a temperature of %s", loaded.path, self.spec.temperature)
            self.temperature = 1.0
        height, width = self.spec.input_size
        self.source_size = _source_size(self.spec, self.tta)
        wanted, self.precision_reason = resolve_inference_precision(loaded.model, precision)
        model, self.precision = at_precision(loaded.model, wanted)
        if self.precision != wanted:
            self.precision_reason = "no bfloat16 copy of this model"
        self._run, self._infer = _compiled(model, (height, width, self.spec.channels))
        if warm_up:
            self.predict([np.zeros((height, width, 3), np.uint8)])  # trace now, not on the first frame

    @property
    def labels(self) -> tuple[str, ...]:
        return self.spec.labels

    @property
    def num_classes(self) -> int:
        return len(self.spec.labels)

    def preprocess(self, crops: Sequence[np.ndarray], rgb: bool = False) -> np.ndarray:
        """Face crops (BGR, BGRA or grey uint8, any size; RGB with ``rgb``) -> normalised (N, h, w, C) float32
        faces at the size the views are cut from (``source_size``)."""
        height, width = self.source_size
        channels = self.spec.channels
        batch = np.empty((len(crops), height, width, channels), np.float32)
        for i, crop in enumerate(crops):
            batch[i] = normalise_pixels(_fit(crop, height, width, channels, rgb), self.spec.normalization)
        return batch

    def views(self, faces: np.ndarray) -> np.ndarray:
        """(N, h, w, C) faces at ``source_size`` -> (V * N, H, W, C): view v of face i at row v * N + i."""
        height, width = self.spec.input_size
        sh, sw = faces.shape[1:3]
        top, left = (sh - height) // 2, (sw - width) // 2
        windows = [(top, left)]
        if self.tta == "crops":
            windows += [(0, 0), (0, sw - width), (sh - height, 0), (sh - height, sw - width)]
        out = [faces[:, y:y + height, x:x + width] for y, x in windows]
        if self.tta != "none":
            out += [view[:, :, ::-1] for view in out]
        return np.ascontiguousarray(np.concatenate(out)) if len(out) > 1 else np.ascontiguousarray(out[0])

    def predict(self, crops: Sequence[np.ndarray], rgb: bool = False) -> np.ndarray:
        """Calibrated probabilities (N, num_classes), rows in the order of ``crops``; (0, K) for none."""
        if len(crops) == 0:
            return np.zeros((0, self.num_classes), np.float32)
        return self.predict_faces(self.preprocess(crops, rgb))

    def predict_faces(self, faces: np.ndarray) -> np.ndarray:
        """``predict`` for faces already preprocessed (``preprocess``)."""
        n = len(faces)
        output = np.asarray(self._run(self.views(faces)), dtype=np.float32)
        probabilities = as_probabilities(output.reshape(output.shape[0], -1))
        probabilities = probabilities.reshape(-1, n, probabilities.shape[1]).mean(axis=0)
        return apply_temperature(probabilities, self.temperature)


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


def _compiled(model: Any, shape: tuple[int, int, int]) -> tuple[Callable[[np.ndarray], Any], Any]:
    """(run, the traced tf.function): one traced, frozen TensorFlow function for every batch size; on
    other Keras backends (training on JAX, say) the model's own ``predict_on_batch`` (and None)."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return model.predict_on_batch, None
    import tensorflow as tf

    # training=False keeps dropout/batch-norm in inference mode.
    @tf.function(input_signature=[tf.TensorSpec([None, *shape], tf.float32)])
    def infer(batch: tf.Tensor) -> tf.Tensor:
        return model(batch, training=False)

    return _frozen(infer, tf) or infer, infer


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
    call = _flat_call(frozen)

    def run(batch: np.ndarray) -> Any:
        return tf.nest.flatten(call(tf.constant(batch)))[0]

    return run


def _flat_call(frozen: Any) -> Callable[[Any], Any]:
    """The frozen function's flat call: one input tensor in, its outputs out.

    Calling the frozen ConcreteFunction itself first tries its structured signature, which a frozen graph does
    not have; the TypeError it raises and catches formats the whole input batch into its message before the
    flat call runs: 1 ms of an 8-face, 2.6 ms call (bench/classifier.py, --threads 1). The inference
    function's ``call_flat`` is that flat call without the detour; TensorFlow versions without it use the
    ConcreteFunction.
    """
    inference = getattr(frozen, "inference_fn", None)
    if inference is None or not hasattr(inference, "call_flat") or list(frozen.captured_inputs):
        return frozen
    return inference.call_flat


def _source_size(spec: ModelSpec, tta: str) -> tuple[int, int]:
    """The size faces are resized to before the views are cut (see the module docstring)."""
    height, width = spec.input_size
    if spec.crop_from and spec.crop_from[0] >= height and spec.crop_from[1] >= width:
        return spec.crop_from
    if tta == "crops":
        return round(height * 12 / 11), round(width * 12 / 11)
    return height, width


def apply_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log(p) / T)`` row by row: the same ranking, sharper (T < 1) or softer (T > 1)."""
    if temperature == 1.0 or len(probabilities) == 0:
        return probabilities.astype(np.float32, copy=False)
    logits = np.log(np.clip(probabilities, 1e-12, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


def _fit(crop: np.ndarray, height: int, width: int, channels: int, rgb: bool = False) -> np.ndarray:
    """One crop -> (height, width, channels) uint8: grey or RGB as the model expects, resized.

    Crops are BGR (OpenCV frames and photos) unless ``rgb`` (data sets, which are read as RGB)."""
    image = np.asarray(crop)
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if channels == 1:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY if rgb else cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    elif image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    elif not rgb:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
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
