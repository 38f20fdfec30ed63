"""Training input: even-sized batches, one-warp augmentation and random crops, mixup, oversampling, class weights.

Every training batch is full and has an even number of samples. TensorFlow 2.20/2.21 with oneDNN (the
default) crashes the process on a training step over an odd-sized batch, and a data set whose size is not
a multiple of the batch size would otherwise end every epoch on one. The stream is therefore an endless
shuffled repetition of the data, cut into ``ceil(N / batch)`` full batches per epoch: each epoch sees about
N samples, every sample is seen equally often over the run, and no batch is ever partial or odd.

With the TensorFlow backend batches come from tf.data (parallel, prefetched, no Python per image); with
JAX or PyTorch (e.g. on a GPU machine without TensorFlow) from a ``keras.utils.PyDataset`` of numpy
batches. Augmentation is one affine warp per image in the stream (augment.py: a TensorFlow op here, OpenCV
for the numpy batches), with the same matrix maths on every backend.

The stream is a pure function of the run's seed and the position in it: pass p over the data is the
permutation drawn from (seed, p), and batch b's augmentation and mixup are drawn from (seed, b) with
stateless random ops. A run resumed after epoch k therefore starts at batch k x steps and sees exactly
the batches the uninterrupted run would have seen (``start_epoch``), instead of replaying the first ones
or drawing an unrelated stream.
"""

from __future__ import annotations

import functools
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


def process_seed(seed: int, initial_epoch: int) -> int:
    """The seed of a training process's global random state (dropout, random erasing) when it starts at
    ``initial_epoch``: the run's own seed for a fresh run, a different one per resume point, so a resumed
    process does not redraw the dropout masks its predecessor began with. The data stream does not use it:
    it continues from its position (module docstring)."""
    if initial_epoch <= 0:
        return seed
    return (seed * 1_000_003 + initial_epoch * 7_919) % (2**31 - 1)


@functools.lru_cache(maxsize=4)
def _pass_order(n: int, seed: int, p: int) -> np.ndarray:
    """Pass p's permutation of the n samples (cached: an epoch's batches read the same one or two passes)."""
    order = np.random.default_rng([seed, p]).permutation(n)
    order.flags.writeable = False
    return order


def stream_positions(n: int, batch_size: int, seed: int, batch_index: int) -> np.ndarray:
    """The sample indices of batch ``batch_index`` of the numpy stream: its slice of the endless
    concatenation of per-pass permutations (pass p drawn from (seed, p))."""
    first, offset = divmod(batch_index * batch_size, n)
    passes = [_pass_order(n, seed, p) for p in range(first, first + (offset + batch_size - 1) // n + 1)]
    return np.concatenate(passes)[offset:offset + batch_size]


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
    """Full, even batches of normalised images for backends without tf.data (JAX, PyTorch).

    Batch ``index`` of the epoch counted from ``start_epoch`` is global batch ``epoch x steps + index``
    of the run's stream, drawn from the seed and that number alone (module docstring).
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, num_classes: int, batch_size: int,
                 normalization: str, probabilities: np.ndarray | None, sample_weights: np.ndarray | None,
                 mixup: float, seed: int, targets: np.ndarray | None = None,
                 augmentation: Augmentation | None = None, start_epoch: int = 0) -> None:
        super().__init__()
        self.augmentation = augmentation
        self.targets = targets
        self.images, self.labels = images, labels
        self.num_classes, self.batch_size = num_classes, batch_size
        self.normalization, self.probabilities = normalization, probabilities
        self.sample_weights, self.mixup = sample_weights, mixup
        self.seed = seed
        self.steps = math.ceil(len(labels) / batch_size)
        self.epoch = start_epoch

    def __len__(self) -> int:
        return self.steps

    def on_epoch_end(self) -> None:
        self.epoch += 1

    def batch(self, global_index: int) -> Any:
        """Batch ``global_index`` of the stream, counted from the start of the run."""
        if self.probabilities is None:
            idx = stream_positions(len(self.labels), self.batch_size, self.seed, global_index)
        else:
            idx = np.random.default_rng([self.seed, global_index, 0]).choice(
                len(self.labels), size=self.batch_size, p=self.probabilities)
        rng = np.random.default_rng([self.seed, global_index, 1])
        x = normalise_pixels(self.images[idx], self.normalization)
        if self.augmentation is not None:
            x = augment_batch_np(x, self.augmentation, rng)
        y = self.targets[idx] if self.targets is not None else _one_hot(self.labels[idx], self.num_classes)
        if self.mixup > 0:
            lam = rng.beta(self.mixup, self.mixup, size=(len(idx), 1)).astype(np.float32)
            perm = rng.permutation(len(idx))
            x = lam[:, :, None, None] * x + (1 - lam[:, :, None, None]) * x[perm]
            y = lam * y + (1 - lam) * y[perm]
        if self.sample_weights is not None:
            return x, y, self.sample_weights[self.labels[idx]]
        return x, y

    def __getitem__(self, index: int) -> Any:
        return self.batch(self.epoch * self.steps + index)


def train_stream(images: np.ndarray, labels: np.ndarray, num_classes: int, batch_size: int, normalization: str,
                 *, class_weights: np.ndarray | None = None, oversample: bool = False, mixup: float = 0.0,
                 seed: int = 1337, targets: np.ndarray | None = None,
                 augmentation: Augmentation | None = None, start_epoch: int = 0) -> tuple[Any, int]:
    """(dataset, steps_per_epoch) of full, even, shuffled training batches: x float, y one-hot (, weight).

    ``augmentation`` (None: none) warps each image, and with a crop also sets the output size.
    ``targets`` (N, K) replaces the one-hot labels as y (soft targets from a teacher, say); sampling and class
    weights still follow ``labels``. ``start_epoch`` k starts the stream where a run that has trained k
    epochs stands: its batches are those the stream started at 0 yields from batch k x steps on.
    """
    probabilities = sampling_probabilities(labels, num_classes, oversample)
    steps = math.ceil(len(labels) / batch_size)
    if keras.backend.backend() != "tensorflow":
        return NumpyBatches(images, labels, num_classes, batch_size, normalization, probabilities, class_weights,
                            mixup, seed, targets, augmentation, start_epoch), steps
    import tensorflow as tf

    n = len(labels)
    start_batch = start_epoch * steps
    endless = 2**62
    key = tf.constant(seed, tf.int64)

    if probabilities is None:
        first_pass, offset = divmod(start_batch * batch_size, n)

        def one_pass(p: Any) -> Any:
            order = tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), seed=tf.stack([key, p]))
            return tf.data.Dataset.from_tensor_slices(order)

        index_batches = (tf.data.Dataset.range(first_pass, endless).flat_map(one_pass).skip(offset)
                         .batch(batch_size, drop_remainder=True))
    else:
        logits = tf.math.log(tf.constant(probabilities[None, :], tf.float32))
        index_batches = tf.data.Dataset.range(start_batch, endless).map(
            lambda b: tf.random.stateless_categorical(logits, batch_size, seed=tf.stack([key, b]),
                                                      dtype=tf.int64)[0])
    x_all = tf.constant(images)
    y_all = tf.constant(labels.astype(np.int64))
    weights = tf.constant(class_weights) if class_weights is not None else None
    soft = tf.constant(targets.astype(np.float32)) if targets is not None else None
    scale = {"minus1_1": (1 / 127.5, -1.0), "zero_1": (1 / 255.0, 0.0), "raw": (1.0, 0.0)}[normalization]

    def gather(idx: Any, b: Any) -> Any:
        # the draws of batch b: a function of (seed, b) only, whatever thread or process makes the batch
        seeds = tf.random.experimental.stateless_split(tf.stack([key, b]), num=4)
        x = tf.cast(tf.gather(x_all, idx), tf.float32) * scale[0] + scale[1]
        y_int = tf.gather(y_all, idx)
        y = tf.gather(soft, idx) if soft is not None else tf.one_hot(y_int, num_classes)
        if augmentation is not None:
            x = augment_batch_tf(x, augmentation, seeds[0])
        if mixup > 0:
            m = tf.shape(idx)[0]
            g1 = tf.random.stateless_gamma([m, 1], seeds[1], alpha=mixup)
            g2 = tf.random.stateless_gamma([m, 1], seeds[2], alpha=mixup)
            lam = g1 / (g1 + g2)
            perm = tf.random.experimental.stateless_shuffle(tf.range(m), seed=seeds[3])
            x = lam[:, :, None, None] * x + (1 - lam[:, :, None, None]) * tf.gather(x, perm)
            y = lam * y + (1 - lam) * tf.gather(y, perm)
        if weights is not None:
            return x, y, tf.gather(weights, y_int)
        return x, y

    dataset = (tf.data.Dataset.zip(index_batches, tf.data.Dataset.range(start_batch, endless))
               .map(gather, num_parallel_calls=tf.data.AUTOTUNE)
               .prefetch(tf.data.AUTOTUNE))
    return dataset, steps


def eval_arrays(images: np.ndarray, labels: np.ndarray, num_classes: int, normalization: str,
                crop: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Validation data as arrays, centre-cropped for a crop-trained model (evaluation has no odd-batch
    problem; only training steps do)."""
    return normalise_pixels(center_crop(images, crop), normalization), _one_hot(labels, num_classes)
