"""Training: config in, experiment folder out (best.h5, last.keras, log.csv, config.json, report).

The model that is trained wraps the architecture with augmentation layers (active only in training);
best.h5 holds the bare architecture with FER Studio metadata, ready for inference, while last.keras holds
the whole training state (optimizer included) for --resume.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import threading
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from app.core.datasets import Dataset, Split, load_dataset, stratified_split
from app.core.errors import DatasetError
from app.core.files import atomic_write_bytes
from app.core.model_io import ModelSpec, save_model
from app.core.training.augment import Augmentation
from app.core.training.events import EventSink
from app.core.training.runs import BEST_NAME, LAST_NAME, check_output_folder, final_report, resume_run

logger = logging.getLogger(__name__)

OPTIMIZERS = ("adam", "sgd", "rmsprop")
SCHEDULES = ("cosine", "plateau", "constant")


@dataclass
class TrainConfig:
    """Everything that defines a training run; saved as config.json in the output folder."""

    data: str
    out: str
    arch: str = "mini_xception"
    l2: float | None = None  # L2 penalty on the kernels; None: the architecture's own (architectures.DEFAULT_L2)
    width: int | None = None  # filters of the first block (vgg); None: the architecture's own
    dropout_scale: float | None = None  # multiplies the architecture's dropout rates; 0: none; None: its own
    input_size: tuple[int, int] = (48, 48)  # faces are read at this size
    crop: int | None = None  # train on random crop x crop windows (the model's input), evaluate on the centre one
    precision: str = "auto"  # float32 | bfloat16 | auto (fast_layers.resolve_precision)
    channels: int = 1
    normalization: str = "minus1_1"
    epochs: int = 30
    batch_size: int = 64
    lr: float | None = None  # None: the optimizer's usual default
    optimizer: str = "adam"
    schedule: str = "cosine"
    weight_decay: float = 0.0
    augment: bool = True
    augment_strength: float = 1.0
    mixup: float = 0.0
    random_erasing: float = 0.0
    class_weights: bool = False
    oversample: bool = False
    focal_loss: bool = False
    label_smoothing: float = 0.0
    val_split: float = 0.1
    patience: int = 0  # early stopping patience in epochs; 0 = off
    seed: int = 1337
    max_samples: int | None = None
    resume: str | None = None
    init_from: str | None = None  # start from this model's weights (fine-tuning, a second LR cycle)
    distill_from: str | None = None  # a teacher model whose probabilities are blended into the targets
    distill_weight: float = 0.5  # the teacher's share of each target
    distribute: bool = False
    batch_shards: str = "auto"  # each batch in N shards computed side by side, a core each: auto | N
    extra: dict[str, Any] = field(default_factory=dict)

    def default_lr(self) -> float:
        return self.lr if self.lr is not None else {"adam": 1e-3, "sgd": 0.05, "rmsprop": 1e-3}[self.optimizer]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """A config from its config.json form (unknown keys, from a newer version, are dropped)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "input_size" in values:
            values["input_size"] = tuple(values["input_size"])
        return cls(**values)

    @property
    def model_input_size(self) -> tuple[int, int]:
        return (self.crop, self.crop) if self.crop else tuple(self.input_size)  # type: ignore[return-value]

    def augmentation(self) -> Augmentation | None:
        crop = (self.crop, self.crop) if self.crop else None
        if self.augment:
            return Augmentation.from_strength(self.augment_strength, crop)
        return Augmentation(False, 0.0, 0.0, 0.0, crop) if crop else None


@dataclass
class TrainResult:
    best_model: Path | None
    best_epoch: int | None
    best_value: float | None
    interrupted: bool
    report: dict[str, Any] | None = None


class StopFlag:
    """Set by SIGINT/SIGTERM (or a caller) to stop after the current batch."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self, *_: Any) -> None:
        if not self._event.is_set():
            logger.warning("stop requested: finishing the current batch, keeping the best checkpoint")
        self._event.set()

    def __call__(self) -> bool:
        return self._event.is_set()


def _subsample(split: Split, max_samples: int, seed: int) -> Split:
    if max_samples >= len(split):
        return split
    keep, _ = stratified_split(split.labels, 1 - max_samples / len(split), seed)
    if len(keep) > max_samples:  # per-class rounding can overshoot by a few: "at most" means at most
        keep = np.sort(np.random.default_rng(seed).choice(keep, max_samples, replace=False))
    return Split(split.images[keep], split.labels[keep])


def validate_dataset(data: Dataset) -> None:
    train, val = data.splits.get("train"), data.splits.get("val")
    if train is None or len(train) == 0:
        raise DatasetError(f"{data.source}: no training images.")
    present = np.unique(train.labels)
    if len(present) < 2:
        raise DatasetError(f"{data.source}: only one class ({data.labels[present[0]]}) has training images; "
                           "a classifier needs at least two.")
    if val is None or len(val) == 0:
        raise DatasetError(f"{data.source}: no validation images (too few images per class to hold some out).")


def _optimizer(config: TrainConfig) -> Any:
    """The optimizer, with a plain learning rate: the cosine schedule is set per step by CosineSchedule
    from (epoch, step) and the run's config, so a resumed or extended run follows its own schedule."""
    import keras

    lr = config.default_lr()
    wd = config.weight_decay or None
    if config.optimizer == "adam":
        return keras.optimizers.AdamW(lr, weight_decay=wd) if wd else keras.optimizers.Adam(lr)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=0.9, nesterov=True, weight_decay=wd)
    if config.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(lr, weight_decay=wd)
    raise ValueError(f"unknown optimizer {config.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")


def build_training_model(config: TrainConfig, num_classes: int, precision: str) -> tuple[Any, Any]:
    """(training model, compiled; the bare architecture). They are one model unless random erasing (a
    Keras layer in front of the architecture) is on; the other augmentation runs in the input stream.
    Layers are built under ``precision``'s policy; batch norm runs fused on TensorFlow, and bfloat16
    convolutions on small maps take a faster kernel gradient (fast_layers)."""
    import keras

    from app.core.training.data import build_eraser
    from app.core.training.fast_layers import keras_policy, use_fused_batch_norm, use_small_map_convolutions

    shape = (*config.model_input_size, config.channels)
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(keras_policy(precision))
    try:
        base = _build_base(config, num_classes)
        if config.random_erasing > 0:
            inputs = keras.Input(shape=shape, name="image")
            model = keras.Model(inputs, base(build_eraser(config.random_erasing, config.seed)(inputs)), name="trainer")
        else:
            model = base
    finally:
        keras.mixed_precision.set_dtype_policy(previous)
    if config.focal_loss:
        loss = keras.losses.CategoricalFocalCrossentropy(label_smoothing=config.label_smoothing)
    else:
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)
    model.compile(optimizer=_optimizer(config), loss=loss, metrics=["accuracy"])
    use_fused_batch_norm(model)
    use_small_map_convolutions(model)
    return model, base


def _strategy(config: TrainConfig) -> tuple[Any, str]:
    """(the --distribute strategy or None, what it is)."""
    if not config.distribute:
        return None, "one device"
    import keras
    import tensorflow as tf

    if keras.backend.backend() != "tensorflow":
        raise ValueError("--distribute uses tf.distribute and needs the TensorFlow backend")
    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy(), "--distribute with TF_CONFIG"
    return tf.distribute.MirroredStrategy(), "--distribute over the local devices"


def train(config: TrainConfig, sink: EventSink | None = None, stop: StopFlag | None = None) -> TrainResult:
    """Run one training; returns where the best model is. Raises FerStudioError for bad input."""
    import keras

    from app.core.training.architectures import check_dropout_scale, check_l2, check_width
    from app.core.training.batch_shards import parse_setting as parse_shards_setting
    from app.core.training.batch_shards import start_shards, use_batch_shards
    from app.core.training.callbacks import CheckpointCallback, CosineSchedule, ProgressCallback, StoppedMidEpoch
    from app.core.training.data import balanced_class_weights, eval_arrays, even_batch_size, process_seed, train_stream
    from app.core.training.fast_layers import (
        float32_copy,
        resolve_precision,
        use_fused_batch_norm,
        use_small_map_convolutions,
    )

    sink = sink or EventSink()
    stop = stop or StopFlag()
    out = Path(config.out)
    # bad settings are refused before the output folder is made
    parse_shards_setting(config.batch_shards)
    if config.optimizer not in OPTIMIZERS or config.schedule not in SCHEDULES:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, schedule one of {SCHEDULES}")
    check_l2(config.arch, config.l2)
    check_width(config.arch, config.width)
    check_dropout_scale(config.arch, config.dropout_scale)
    if config.crop is not None and not 8 <= config.crop <= min(config.input_size):
        raise ValueError(f"--crop must be between 8 and the input size {min(config.input_size)}, not {config.crop}")
    check_output_folder(out, resume=bool(config.resume))
    precision, why = resolve_precision(config.precision, config.arch)
    logger.info("training in %s (%s)", precision, why)
    if config.resume and config.init_from:
        raise ValueError("--resume continues a run with its own weights; it cannot be combined with --init-from")
    # before any model loads: thread pools are fixed when TensorFlow's runtime starts
    shard_plan = start_shards(config.batch_shards, config.arch, config.batch_size, distribute=config.distribute)
    logger.info("batches in %d shard(s): %s", shard_plan.shards, shard_plan.why)
    strategy, replicas_why = _strategy(config)
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1
    source = _load_init_source(Path(config.init_from), config) if config.init_from else None
    teacher = _load_teacher(Path(config.distill_from), config) if config.distill_from else None
    if source is not None and source.spec.normalization != config.normalization:
        logger.info("%s expects %s pixels; training with the same", config.init_from, source.spec.normalization)
        config = replace(config, normalization=source.spec.normalization)
    keras.utils.set_random_seed(config.seed)

    data = load_dataset(config.data, config.input_size, config.channels, config.val_split, config.seed)
    validate_dataset(data)
    train_split, val_split = data.splits["train"], data.splits["val"]
    if config.max_samples:
        train_split = _subsample(train_split, config.max_samples, config.seed)
    num_classes = len(data.labels)

    batch = even_batch_size(config.batch_size, replicas * shard_plan.shards)
    weights = balanced_class_weights(train_split.labels, num_classes) if config.class_weights else None
    targets = None
    if teacher is not None:
        from app.core.training import distillation as distill

        key = distill.targets_key(teacher, train_split.images, train_split.labels, data.labels,
                                  config.distill_weight)
        targets, where = distill.find_cached_targets(out, key)
        sink.emit("distilling", teacher=teacher.path, samples=len(train_split), tta=key["tta"],
                  cached=where, cache=str(distill.shared_cache_path(key)) if where == "shared" else None)
        if targets is None:
            targets = distill.distillation_targets(teacher, train_split.images, train_split.labels, data.labels,
                                                   config.distill_weight)
            distill.save_cached_targets(out, key, targets)
        elif where == "shared":  # the run folder keeps its own copy, for --resume and for the record
            distill.save_cached_targets(out, key, targets, shared=False)
        del teacher
    initial_epoch, best_value, best_epoch = 0, -math.inf, None
    resumed = resume_run(Path(config.resume)) if config.resume else None
    if resumed is not None:
        initial_epoch = resumed[2]
    # The data stream continues from where the stopped process left it (same seed, batch initial_epoch x
    # steps on); the model's own randomness (dropout) gets a new seed per resume point.
    seed = process_seed(config.seed, initial_epoch)
    if seed != config.seed:
        keras.utils.set_random_seed(seed)
    stream, steps = train_stream(train_split.images, train_split.labels, num_classes, batch, config.normalization,
                                 class_weights=weights, oversample=config.oversample, mixup=config.mixup,
                                 seed=config.seed, targets=targets, augmentation=config.augmentation(),
                                 start_epoch=initial_epoch)
    crop = (config.crop, config.crop) if config.crop else None
    x_val, y_val = eval_arrays(val_split.images, val_split.labels, num_classes, config.normalization, crop)

    if resumed is not None:
        model, base, initial_epoch, best_value, best_epoch = resumed
    elif strategy is not None:
        with strategy.scope():
            model, base = build_training_model(config, num_classes, precision)
    else:
        model, base = build_training_model(config, num_classes, precision)
    # (again: a resumed model is loaded with stock calls)
    fused, small_maps = use_fused_batch_norm(model), use_small_map_convolutions(model)
    shards = use_batch_shards(model, shard_plan.shards)
    transfer = None
    if source is not None:
        from app.core.training.weight_transfer import transfer_weights

        transfer = transfer_weights(source.model, source.spec.labels, base, data.labels, Path(config.init_from))
        logger.info("%s", transfer.describe())

    info_base = {"dataset": str(data.source.name), "dataset_kind": data.kind, "dataset_fingerprint": data.fingerprint,
                 "splits": data.split_names, "train_samples": len(train_split), "val_samples": len(val_split),
                 "batch_size": batch, "batch_shards": shards, "config": _jsonable(asdict(config))}
    if transfer is not None:
        info_base["init_from"] = {"model": transfer.source.name, "layers": transfer.layers_copied,
                                  "head_classes": list(transfer.head_classes),
                                  "new_classes": list(transfer.new_classes)}
    spec = ModelSpec(labels=data.labels, input_size=config.model_input_size, channels=config.channels,
                     normalization=config.normalization, arch=config.arch,
                     crop_from=tuple(config.input_size) if config.crop else None)  # type: ignore[arg-type]
    info_base["precision"] = precision

    def save_best(epoch: int, logs: dict) -> Path:
        info = {**info_base, "epoch": epoch, "metrics": _jsonable(logs)}
        # best.h5 is for inference anywhere: float32 layers, whatever the training precision.
        return save_model(float32_copy(base), out / BEST_NAME, ModelSpec(**{**asdict(spec), "info": info}))

    def save_last(epoch: int, logs: dict) -> Path:
        info = {**info_base, "epoch": epoch, "metrics": _jsonable(logs)}
        return save_model(model, out / LAST_NAME, ModelSpec(**{**asdict(spec), "info": info}))

    atomic_write_bytes(out / "config.json", json.dumps(_jsonable(asdict(config)), indent=2).encode("utf-8"),
                       "the run's config")
    progress = ProgressCallback(sink, config.epochs, steps, stop)
    checkpoints = CheckpointCallback(save_best, save_last, sink, best=best_value)
    checkpoints.best_epoch = best_epoch
    callbacks: list[Any] = [progress, checkpoints,
                            keras.callbacks.CSVLogger(str(out / "log.csv"), append=bool(config.resume))]
    if config.schedule == "cosine":
        callbacks.insert(0, CosineSchedule(config.default_lr(), config.epochs, steps))
    if config.schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau("val_loss", factor=0.5,
                                                           patience=max(2, config.patience // 3 or 5),
                                                           min_lr=1e-5))
    if config.patience:
        callbacks.append(keras.callbacks.EarlyStopping("val_accuracy", patience=config.patience))

    sink.emit("start", epochs=config.epochs, initial_epoch=initial_epoch, steps_per_epoch=steps, batch_size=batch,
              train_samples=len(train_split), val_samples=len(val_split), labels=list(data.labels), arch=config.arch,
              out=str(out), replicas=replicas, replicas_reason=replicas_why, shards=shards,
              shards_reason=shard_plan.why,
              init_from=transfer.describe() if transfer else None,
              precision=precision, precision_reason=why, fused_batch_norm=fused, small_map_convolutions=small_maps,
              input_shape=[*config.model_input_size, config.channels], stream_seed=config.seed,
              stream_start_batch=initial_epoch * steps, process_seed=seed)
    handlers = _install_signal_handlers(stop)
    started = time.monotonic()
    dropped: StoppedMidEpoch | None = None
    try:
        if initial_epoch < config.epochs and not stop():
            try:
                model.fit(stream, steps_per_epoch=steps, epochs=config.epochs, initial_epoch=initial_epoch,
                          validation_data=(x_val, y_val), validation_batch_size=256, callbacks=callbacks,
                          verbose=0, shuffle=False)  # the stream is shuffled already
            except StoppedMidEpoch as stopped:
                dropped = stopped
                for callback in callbacks:  # what fit would have done at its end (closes the CSV log)
                    callback.on_train_end()
    finally:
        _restore_signal_handlers(handlers)
    best_path = out / BEST_NAME if (out / BEST_NAME).exists() else None
    report = None
    if best_path is not None:
        sink.emit("evaluating", model=best_path, split=data.split_names.get("val", "val"), samples=len(val_split))
        report = final_report(best_path, val_split, data.labels, out, sink, data.split_names.get("val", "val"))
    result = TrainResult(best_path, checkpoints.best_epoch, None if math.isinf(checkpoints.best) else checkpoints.best,
                         interrupted=progress.stopped_by_request, report=report)
    sink.emit("done", best_model=best_path, best_epoch=result.best_epoch, best_value=result.best_value,
              interrupted=result.interrupted, seconds=time.monotonic() - started,
              dropped_epoch=dropped.epoch if dropped else None)
    return result


def _build_base(config: TrainConfig, num_classes: int) -> Any:
    """The untrained net a run trains: one place, so the --init-from check cannot drift from the real build."""
    from app.core.training.architectures import build_model

    return build_model(config.arch, (*config.model_input_size, config.channels), num_classes, l2=config.l2,
                       width=config.width, dropout_scale=config.dropout_scale)


def _load_init_source(path: Path, config: TrainConfig) -> Any:
    """The model --init-from names, loaded safely and checked against --arch before any data is read."""
    from app.core.errors import ModelLoadError
    from app.core.model_io import load_model
    from app.core.training.weight_transfer import transfer_weights

    source = load_model(path)
    trial = _build_base(config, len(source.spec.labels))  # the net training builds, with the source's classes
    try:
        transfer_weights(source.model, source.spec.labels, trial, source.spec.labels, path)
    except ModelLoadError as exc:
        trained_as = f" (it was trained as {source.spec.arch})" if source.spec.arch else ""
        raise ModelLoadError(f"{exc}{trained_as}") from None
    return source


def _load_teacher(path: Path, config: TrainConfig) -> Any:
    """The --distill-from model, loaded safely before any data is read."""
    from app.core.model_io import load_model

    if not 0.0 < config.distill_weight <= 1.0:
        raise ValueError(f"--distill-weight must be in (0, 1], not {config.distill_weight}")
    return load_model(path)


def _install_signal_handlers(stop: StopFlag) -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, stop.set)
    return previous


def _restore_signal_handlers(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
