"""Keras callbacks of a training run: progress events (and stop on request), checkpoints."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Callable

import keras
import numpy as np

from app.core.training.events import EventSink

logger = logging.getLogger(__name__)


class StoppedMidEpoch(Exception):
    """A stop was requested before the last batch of an epoch: that partial epoch is dropped, not saved.

    Checkpointing it as if it were whole would make ``--resume`` skip the rest of its batches and put the
    run's epoch count and schedule ahead of the training actually done; dropping it keeps every file at the
    last whole epoch, and a resumed run repeats the dropped one from its first batch.
    """

    def __init__(self, epoch: int, batches: int, steps: int) -> None:
        super().__init__(f"stopped during epoch {epoch} after {batches} of {steps} batches")
        self.epoch, self.batches, self.steps = epoch, batches, steps


class ProgressCallback(keras.callbacks.Callback):
    """Emits batch (throttled) and epoch_end events; stops after the current batch when asked.

    A stop before the epoch's last batch raises :class:`StoppedMidEpoch` (the partial epoch is neither
    validated nor saved); a stop at the last batch or during validation ends the run after this epoch's
    checkpoint.
    """

    def __init__(self, sink: EventSink, epochs: int, steps: int, should_stop: Callable[[], bool],
                 batch_interval_s: float = 0.5) -> None:
        super().__init__()
        self.sink, self.epochs, self.steps = sink, epochs, steps
        self.should_stop = should_stop
        self.interval = batch_interval_s
        self._last = 0.0
        self._epoch = 0
        self._epoch_start = time.monotonic()
        self.stopped_by_request = False

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch + 1
        self._epoch_start = time.monotonic()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        now = time.monotonic()
        if now - self._last >= self.interval or batch + 1 == self.steps:
            self._last = now
            logs = logs or {}
            self.sink.emit("batch", epoch=self._epoch, step=batch + 1, steps=self.steps,
                           loss=logs.get("loss"), accuracy=logs.get("accuracy"))
        if self.should_stop():
            self.stopped_by_request = True
            if batch + 1 < self.steps:
                raise StoppedMidEpoch(self._epoch, batch + 1, self.steps)
            self.model.stop_training = True

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.should_stop():  # asked during validation: this epoch is whole and is saved; no further one
            self.stopped_by_request = True
            self.model.stop_training = True
        metrics = {k: float(v) for k, v in (logs or {}).items() if np.ndim(v) == 0}
        try:
            metrics["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        except Exception:  # a schedule without a plain value
            pass
        self.sink.emit("epoch_end", epoch=epoch + 1, epochs=self.epochs,
                       seconds=time.monotonic() - self._epoch_start, metrics=metrics)


class CheckpointCallback(keras.callbacks.Callback):
    """Saves best.h5 (inference model, by the monitored metric) and last.keras (whole training state).

    Both are written to a temporary file and renamed (model_io.save_model), so a crash at any moment
    leaves the previous good files in place.
    """

    def __init__(self, save_best: Callable[[int, dict], Path], save_last: Callable[[int, dict], Path],
                 sink: EventSink, monitor: str = "val_accuracy", best: float = -math.inf) -> None:
        super().__init__()
        self.save_best, self.save_last, self.sink = save_best, save_last, sink
        self.monitor = monitor
        self.best = best
        self.best_epoch: int | None = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = dict(logs or {})
        value = logs.get(self.monitor)
        if value is not None and float(value) > self.best:
            self.best = float(value)
            self.best_epoch = epoch + 1
            path = self.save_best(epoch + 1, logs)
            self.sink.emit("checkpoint", path=path, epoch=epoch + 1, monitor=self.monitor, value=self.best)
        self.save_last(epoch + 1, {**logs, "best": self.best, "best_epoch": self.best_epoch})


def cosine_learning_rate(step: int, peak: float, epochs: int, steps: int, alpha: float = 0.01) -> float:
    """Linear warm-up (the first 10% of the run, at most 3 epochs), then cosine decay to ``alpha * peak``."""
    total = max(1, epochs * steps)
    warmup = min(total // 10, 3 * steps)
    if step < warmup:
        return peak * step / warmup
    return cosine_decay((step - warmup) / max(1, total - warmup), peak, alpha)


def cosine_decay(progress: float, peak: float, alpha: float = 0.01) -> float:
    """Cosine decay from ``peak`` to ``alpha * peak`` over ``progress`` 0..1 (held at the ends outside it)."""
    progress = min(1.0, max(0.0, progress))
    return peak * ((1.0 - alpha) * 0.5 * (1.0 + math.cos(math.pi * progress)) + alpha)


class CosineSchedule(keras.callbacks.Callback):
    """Sets the learning rate before every step from (epoch, step) and the run's own epochs.

    The schedule is a function of where the run is, not state saved in the optimizer, so ``--resume``
    continues on the same curve, and a run resumed with more ``--epochs`` decays over the new length
    instead of staying at the floor of the old one.
    """

    def __init__(self, peak: float, epochs: int, steps: int) -> None:
        super().__init__()
        self.peak, self.epochs, self.steps = peak, epochs, steps
        self._epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        value = cosine_learning_rate(self._epoch * self.steps + batch, self.peak, self.epochs, self.steps)
        rate = self.model.optimizer.learning_rate
        if isinstance(rate, keras.Variable):
            rate.assign(value)
        else:  # a checkpoint saved with a schedule object: replace it by the plain rate
            self.model.optimizer.learning_rate = value
