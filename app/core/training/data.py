"""Training input: even-sized batches, one-warp augmentation and random crops, mixup, oversampling, class weights.

Every training batch is full and has an even number of samples. TensorFlow 2.20/2.21 with oneDNN (the
default) crashes the process on a training step over an odd-sized batch, and a data set whose size is not
a multiple of the batch size would otherwise end every epoch on one. The stream is therefore an endless
shuffled repetition of the data, cut into ``ceil(N / batch)`` full batches per epoch: each epoch sees about
N samples, every sample is seen equally often over the run, and no batch is ever partial or odd.

With the TensorFlow backend batches come from tf.data (parallel, prefetched, no Python per image); with
JAX or PyTorch (e.g. on a GPU machine without TensorFlow) from a ``keras.utils.PyDataset`` of numpy
batches. Augmentation is one affine warp per image in the stream (augment.py: a TensorFlow op here, OpenCV
for the numpy batches), with the same matrix maths on every backend. A resumed run draws a new stream
(``stream_seed``) instead of replaying the one its previous process began with.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import keras
import numpy as np

from app.core.model_io import normalise_pixels
from app.core.training.augment import Augmentation, augment_batch_np, augment_batch_tf, center_crop

logger = logging.getLogger(__name__)


def even_batch_size(requested: int, replicas: int = 1) -> int:
    """The batch size actually used: at least 2, and a multiple of 2 x replicas (see the module docstring)."""
    step = 2 * max(1, replicas)
    size = max(step, int(requested))
    if size % step:
        size += step - size % step
    if size != requested:
        logger.warning("batch size %d -> %d: training batches must be even (and split evenly over %d replica(s))",
                       requested, size, replicas)
    return size


def stream_seed(seed: int, initial_epoch: int) -> int:
    """The seed of the training stream (shuffle order and augmentation draws) for a process that starts at
    ``initial_epoch``: the run's own seed for a fresh run, a different one per resume point.

    With one seed for every process, a resumed run replayed exactly the shuffled, augmented batches its
    previous process began with: a run stopped after k epochs and resumed saw its last k epochs' batches
    again (a 150-epoch VGG run read 4 points higher training accuracy, and lower validation accuracy, for the
    8 epochs after a resume that followed an 8-epoch process).
    """
    if initial_epoch <= 0:
        return seed
    return (seed * 1_000_003 + initial_epoch * 7_919) % (2**31 - 1)


def balanced_class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """sklearn-style "balanced" weights, N / (K * count), for classes present; 0 for absent ones."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(num_classes, dtype=np.float32)
    weights[present] = len(labels) / (present.sum() * counts[present])
    return weights


def sampling_probabilities(labels: np.ndarray, num_classes: int, oversample: bool) -> np.ndarray | None:
    """Per-sample probabilities that make every class equally likely (oversampling), or None for uniform."""
    if not oversample:
        return None
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    per_sample = 1.0 / counts[labels]
    return per_sample / per_sample.sum()


def build_eraser(random_erasing: float, seed: int | None = None) -> keras.layers.Layer:
    """Random erasing (a stock Keras layer, active only in training) for the training model."""
    return keras.layers.RandomErasing(factor=random_erasing, scale=(0.02, 0.15), seed=seed)


def _one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    return np.eye(num_classes, dtype=np.float32)[labels]


class NumpyBatches(keras.utils.PyDataset):
    """Full, even batches of normalised images for backends without tf.data (JAX, PyTorch)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, num_classes: int, batch_size: int,
                 normalization: str, probabilities: np.ndarray | None, sample_weights: np.ndarray | None,
                 mixup: float, seed: int, targets: np.ndarray | None = None,
                 augmentation: Augmentation | None = None) -> None:
        super().__init__()
        self.augmentation = augmentation
        self.targets = targets
        self.images, self.labels = images, labels
        self.num_classes, self.batch_size = num_classes, batch_size
        self.normalization, self.probabilities = normalization, probabilities
        self.sample_weights, self.mixup = sample_weights, mixup
        self.rng = np.random.default_rng(seed)
        self.steps = math.ceil(len(labels) / batch_size)
        self._order = self._draw()

    def _draw(self) -> np.ndarray:
        n = self.steps * self.batch_size
        return self.rng.choice(len(self.labels), size=n, replace=self.probabilities is not None or n > len(self.labels),
                               p=self.probabilities)

    def __len__(self) -> int:
        return self.steps

    def on_epoch_end(self) -> None:
        self._order = self._draw()

    def __getitem__(self, index: int) -> Any:
        idx = self._order[index * self.batch_size:(index + 1) * self.batch_size]
        x = normalise_pixels(self.images[idx], self.normalization)
        if self.augmentation is not None:
            x = augment_batch_np(x, self.augmentation, self.rng)
        y = self.targets[idx] if self.targets is not None else _one_hot(self.labels[idx], self.num_classes)
        if self.mixup > 0:
            lam = self.rng.beta(self.mixup, self.mixup, size=(len(idx), 1)).astype(np.float32)
            perm = self.rng.permutation(len(idx))
            x = lam[:, :, None, None] * x + (1 - lam[:, :, None, None]) * x[perm]
            y = lam * y + (1 - lam) * y[perm]
        if self.sample_weights is not None:
            return x, y, self.sample_weights[self.labels[idx]]
        return x, y


def train_stream(images: np.ndarray, labels: np.ndarray, num_classes: int, batch_size: int, normalization: str,
                 *, class_weights: np.ndarray | None = None, oversample: bool = False, mixup: float = 0.0,
                 seed: int = 1337, targets: np.ndarray | None = None,
                 augmentation: Augmentation | None = None) -> tuple[Any, int]:
    """(dataset, steps_per_epoch) of full, even, shuffled training batches: x float, y one-hot (, weight).

    ``augmentation`` (None: none) warps each image, and with a crop also sets the output size.
    ``targets`` (N, K) replaces the one-hot labels as y (soft targets from a teacher, say); sampling and class
    weights still follow ``labels``.
    """
    probabilities = sampling_probabilities(labels, num_classes, oversample)
    steps = math.ceil(len(labels) / batch_size)
    if keras.backend.backend() != "tensorflow":
        return NumpyBatches(images, labels, num_classes, batch_size, normalization, probabilities, class_weights,
                            mixup, seed, targets, augmentation), steps
    import tensorflow as tf

    if probabilities is None:
        indices = tf.data.Dataset.range(len(labels)).repeat().shuffle(min(len(labels), 50_000), seed=seed)
    else:
        logits = tf.math.log(tf.constant(probabilities[None, :], tf.float32))
        indices = tf.data.Dataset.from_tensors(0).repeat().map(
            lambda _: tf.random.categorical(logits, 1, dtype=tf.int64)[0, 0])
    x_all = tf.constant(images)
    y_all = tf.constant(labels.astype(np.int64))
    weights = tf.constant(class_weights) if class_weights is not None else None
    soft = tf.constant(targets.astype(np.float32)) if targets is not None else None
    scale = {"minus1_1": (1 / 127.5, -1.0), "zero_1": (1 / 255.0, 0.0), "raw": (1.0, 0.0)}[normalization]

    def gather(idx: Any) -> Any:
        x = tf.cast(tf.gather(x_all, idx), tf.float32) * scale[0] + scale[1]
        y_int = tf.gather(y_all, idx)
        y = tf.gather(soft, idx) if soft is not None else tf.one_hot(y_int, num_classes)
        if augmentation is not None:
            x = augment_batch_tf(x, augmentation)
        if mixup > 0:
            n = tf.shape(idx)[0]
            g1 = tf.random.gamma([n, 1], mixup)
            g2 = tf.random.gamma([n, 1], mixup)
            lam = g1 / (g1 + g2)
            perm = tf.random.shuffle(tf.range(n))
            x = lam[:, :, None, None] * x + (1 - lam[:, :, None, None]) * tf.gather(x, perm)
            y = lam * y + (1 - lam) * tf.gather(y, perm)
        if weights is not None:
            return x, y, tf.gather(weights, y_int)
        return x, y

    dataset = (indices.batch(batch_size, drop_remainder=True)
               .map(gather, num_parallel_calls=tf.data.AUTOTUNE)
               .prefetch(tf.data.AUTOTUNE))
    return dataset, steps


def eval_arrays(images: np.ndarray, labels: np.ndarray, num_classes: int, normalization: str,
                crop: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Validation data as arrays, centre-cropped for a crop-trained model (evaluation has no odd-batch
    problem; only training steps do)."""
    return normalise_pixels(center_crop(images, crop), normalization), _one_hot(labels, num_classes)
