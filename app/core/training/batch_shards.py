"""Each training batch in shards computed side by side, one core each (``fer-studio train --batch-shards``).

A small depthwise-separable net (mini_XCEPTION: 58k parameters, dozens of small ops per step) cannot keep
two cores busy inside each op: measured here (2 cores, batch 64), its step runs only 1.37x faster on 2
threads than on 1, and the cores idle a quarter of the step between ops. Split into two shards of 32,
each shard's forward and backward pass is a chain of ops independent of the other's; with one thread per
op and two ops at a time (TensorFlow's intra-/inter-op thread pools), each core runs one shard: 1,100 ->
1,420 images/s on one fixed batch. Ordinary convolutions (the VGG nets, on AMX) already keep every core
busy, so ``auto`` leaves them whole.

The maths, against the whole batch: the loss is the mean of the shards' mean losses (the same number, as
shards are equal), the gradient the mean of theirs (the same), the weight penalty counted once; one
optimizer update per batch. What differs is batch normalisation in training, which normalises each shard
by the shard's own statistics (32 images on 2 cores at batch 64, as the reference mini_XCEPTION trained
with batch 32). Its moving statistics are those of the whole batch, updated once a batch as the stock
layer does: the shards' moments are combined (fast_layers' fused batch norm hands them to the step).

Thread pools are fixed when TensorFlow's runtime starts: ``engine.train`` calls ``start_threads`` before it
loads any model. They hold for the whole process, so what else the run computes runs on one thread an op
too: the teacher pass of ``--distill-from`` measured about 10% slower (the photo ensemble's ten crops,
28-32 -> 25-29 images/s), against a quarter less time per training epoch. Where it is too late to set
them (a model already ran in the process), the batch stays whole and the log says why. The saved model is
the stock one: only the training step of the model object changes.
"""

from __future__ import annotations

import logging
import os
import types
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

#: Architectures whose training step gains from shards (measured: the depthwise-separable nets).
SHARD_GAINS = frozenset({"mini_xception", "mini_xception_wide"})
#: ``auto`` gives each shard at least this many images of a batch (batch-norm statistics stay steady).
MIN_SHARD_BATCH = 32


@dataclass(frozen=True)
class ShardPlan:
    """How many shards a run splits each batch into, and why."""

    shards: int
    why: str


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, e.g. a container's share), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def parse_setting(setting: str | int) -> str:
    """``auto`` or a positive whole number of shards, as text (as config.json stores it)."""
    text = str(setting).strip().lower()
    if text == "auto" or (text.isdigit() and int(text) >= 1):
        return text
    raise ValueError(f"--batch-shards must be auto or a whole number of at least 1, not {setting!r}")


def plan_shards(setting: str | int, arch: str, batch_size: int, *, distribute: bool = False,
                cores: int | None = None) -> ShardPlan:
    """The shards a run uses, from ``setting`` ("auto" or N), the architecture, the batch and other options."""
    text = parse_setting(setting)
    if distribute:
        return ShardPlan(1, "--distribute splits the batch over its devices instead")
    import keras

    if keras.backend.backend() != "tensorflow":
        return ShardPlan(1, f"TensorFlow only (the backend is {keras.backend.backend()})")
    if text != "auto":
        wanted = int(text)
        return ShardPlan(wanted, "asked for" if wanted > 1 else "turned off")
    import tensorflow as tf

    cores = usable_cores() if cores is None else cores
    if tf.config.list_physical_devices("GPU"):
        return ShardPlan(1, "a GPU trains instead")
    if arch not in SHARD_GAINS:
        return ShardPlan(1, f"{arch}'s convolutions already keep every core busy")
    if cores < 2:
        return ShardPlan(1, "one core")
    if batch_size // cores < MIN_SHARD_BATCH:
        return ShardPlan(1, f"a batch of {batch_size} gives {cores} cores fewer than {MIN_SHARD_BATCH} images each")
    return ShardPlan(cores, f"{arch} keeps {cores} cores busier with a shard each")


def start_threads(shards: int, cores: int | None = None) -> str | None:
    """Give each op ``cores // shards`` threads and run ``shards`` ops at a time. Returns None when done, or
    why not (TensorFlow's runtime had already started in this process)."""
    import tensorflow as tf

    cores = usable_cores() if cores is None else cores
    try:
        tf.config.threading.set_intra_op_parallelism_threads(max(1, cores // shards))
        tf.config.threading.set_inter_op_parallelism_threads(shards)
    except RuntimeError:
        intra = tf.config.threading.get_intra_op_parallelism_threads()
        inter = tf.config.threading.get_inter_op_parallelism_threads()
        if (intra, inter) == (max(1, cores // shards), shards):
            return None  # set so by an earlier run in this process
        return ("TensorFlow was already running in this process with its own thread pools; start a new "
                "process to train in shards")
    return None


def start_shards(setting: str | int, arch: str, batch_size: int, *, distribute: bool = False) -> ShardPlan:
    """The plan of a run, with the thread pools set for it: one shard where they can no longer be set."""
    plan = plan_shards(setting, arch, batch_size, distribute=distribute)
    if plan.shards > 1:
        refused = start_threads(plan.shards)
        if refused:
            logger.warning("training with whole batches: %s", refused)
            return ShardPlan(1, refused)
    return plan


def _add(a: Any, b: Any) -> Any:
    """Two shards' gradients of one weight summed (None: the weight does not reach the loss)."""
    return b if a is None else a if b is None else a + b


def _sharded_train_step(self: Any, data: Any) -> Any:
    """Keras's TensorFlow train_step with the batch in ``self._fer_shards`` shards (bound to a model)."""
    import tensorflow as tf
    from keras.src.trainers.data_adapters import data_adapter_utils

    from app.core.training.fast_layers import combine_shard_moments

    n = self._fer_shards
    x, y, sample_weight = data_adapter_utils.unpack_x_y_sample_weight(data)
    xs, ys = tf.split(x, n), tf.split(y, n)
    weights_split = tf.split(sample_weight, n) if sample_weight is not None else [None] * n
    trainable = self.trainable_weights
    gradients, predictions, losses = None, [], []
    with combine_shard_moments(self):
        for x_part, y_part, w_part in zip(xs, ys, weights_split):
            with tf.GradientTape() as tape:
                y_pred = self(x_part, training=True) if self._call_has_training_arg else self(x_part)
                loss = self._compute_loss(x=x_part, y=y_part, y_pred=y_pred, sample_weight=w_part, training=True)
                scaled = self.optimizer.scale_loss(loss) if self.optimizer is not None else loss
            part = tape.gradient(scaled, trainable)
            gradients = part if gradients is None else [_add(a, b) for a, b in zip(gradients, part)]
            predictions.append(y_pred)
            losses.append(loss)
    self._loss_tracker.update_state(tf.add_n(losses) / n, sample_weight=tf.shape(x)[0])
    self.optimizer.apply_gradients(zip([None if g is None else g / n for g in gradients], trainable))
    return self.compute_metrics(x, y, tf.concat(predictions, 0), sample_weight=sample_weight)


def use_batch_shards(model: Any, shards: int) -> int:
    """Train ``model`` (compiled) with each batch in ``shards`` shards; returns the shards in use (1: the
    stock step). Only the bound ``train_step`` of this model object changes, as use_fused_batch_norm's."""
    import keras

    if shards < 2 or keras.backend.backend() != "tensorflow":
        return 1
    object.__setattr__(model, "_fer_shards", shards)
    model.train_step = types.MethodType(_sharded_train_step, model)
    model.train_function = None  # traced again with the new step
    return shards
