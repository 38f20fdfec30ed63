"""Training throughput (images/s): ``fer-studio train``'s pipeline vs the reference posts' stock Keras.

For each architecture (default: the live default's mini_XCEPTION at 48x48; the VGG-style net of width 32 on
random 44x44 crops, the 30-minute recipe's; and the same net at width 64, the bundled photo ensemble's
members), on the same real FER2013 Training rows, batch size and number of steps:

- reference: the stock Keras model (float32, Keras 3's unfused BatchNormalization) fed by
  ``tf_keras.preprocessing.image.ImageDataGenerator(...).flow(x, y, batch_size)`` with the same
  augmentation magnitudes (flip, rotation, shift, zoom), as in the reference blog posts. A crop-trained
  net gets the centre crops of the rows at its input size, since ImageDataGenerator cannot crop.
- ours, exactly as ``fer-studio train`` runs it: ``engine.build_training_model`` (batch norm through
  TensorFlow's fused kernel, ``--precision auto``: bfloat16 where the CPU has it and the net gains, and
  there the kernel gradient of convolutions on small maps as a forward convolution; ``--batch-shards
  auto``: each batch in one shard per core, side by side, for the nets that gain, mini_XCEPTION) fed by
  ``data.train_stream`` (tf.data: gather, normalise and one affine warp per image with the random crop,
  in parallel with the step, prefetched).
- model only: our model on one fixed batch, repeated: the ceiling for any input pipeline.

Every side trains in a fresh process of its own (this script run with ``--side``): batch shards fix
TensorFlow's thread pools for a whole process, and the reference must keep TensorFlow's defaults.

Bench-only dependencies (never in install_requires): ``tf_keras`` (``pip install "tf_keras==2.21.*"``)
and ``scipy`` (ImageDataGenerator's rotations/shifts/zooms use scipy.ndimage). Without them only our
side is measured and a message says what to install. On another Keras backend (``KERAS_BACKEND=jax`` on a
GPU machine) the reference is Keras 3's own copy of ImageDataGenerator and ours the numpy stream.

oneDNN caveat: with TF 2.20/2.21 and oneDNN on, a training step on an odd-sized batch crashes; every side
here uses an even batch size and whole batches only (``--rows`` is rounded down to a multiple of it).

Usage: python bench/train_throughput.py [--data ../shared/data/fer2013.csv.gz] [--rows 4096]
       [--archs mini_xception vgg:32:44 vgg:64:44] [--batch-size 64] [--steps 32] [--epochs 3] [--repeats 2]
An arch is NAME[:WIDTH[:CROP]]. Each side trains ``--epochs`` epochs of ``--steps`` steps; the first
epoch (tracing, warm-up) is not timed. Sides are interleaved over ``--repeats`` rounds and the median
kept. Numbers depend on the machine and its load: compare the ratio, not the rates.
"""

from __future__ import annotations

import argparse
import gzip
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "fer2013.csv.gz"


def read_training_rows(path: Path, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``rows`` Training rows of a FER2013 CSV, streamed (no need to parse all 35,887)."""
    images, labels = [], []
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        next(handle)
        for line in handle:
            emotion, pixels, usage = line.rstrip("\n").split(",")
            if usage.strip() != "Training":
                continue
            images.append(np.array(pixels.split(), dtype=np.uint8).reshape(48, 48, 1))
            labels.append(int(emotion))
            if len(images) == rows:
                break
    return np.stack(images), np.asarray(labels, np.int32)


def arch_config(spec: str, batch_size: int):
    """A TrainConfig for ``NAME[:WIDTH[:CROP]]``, as ``fer-studio train --arch NAME --width W --crop C``."""
    from app.core.training.engine import TrainConfig

    name, *rest = spec.split(":")
    width = int(rest[0]) if rest and rest[0] else None
    crop = int(rest[1]) if len(rest) > 1 else None
    return TrainConfig(data="-", out="-", arch=name, width=width, crop=crop, batch_size=batch_size,
                       optimizer="adam", schedule="constant")


def reference_model(config):
    """The stock architecture: float32, unfused batch norm, compiled as the reference posts do."""
    import keras

    from app.core.training.architectures import build_model

    model = build_model(config.arch, (*config.model_input_size, 1), 7, l2=config.l2, width=config.width)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def our_shards(config) -> tuple[int, str]:
    """(shards, why) as ``fer-studio train`` sets them up, first thing in the process."""
    from app.core.training.batch_shards import start_shards

    plan = start_shards(config.batch_shards, config.arch, config.batch_size)
    return plan.shards, plan.why


def our_model(config, shards: int = 1):
    """The training model exactly as ``fer-studio train`` builds it (precision auto, fused batch norm, the
    batch in shards where the run would split it)."""
    from app.core.training.batch_shards import use_batch_shards
    from app.core.training.engine import build_training_model
    from app.core.training.fast_layers import resolve_precision

    precision, _ = resolve_precision(config.precision, config.arch)
    model = build_training_model(config, 7, precision)[0]
    use_batch_shards(model, shards)
    return model


def our_dataset(config, x: np.ndarray, y: np.ndarray):
    from app.core.training.data import train_stream

    dataset, _ = train_stream(x, y, 7, config.batch_size, "minus1_1", seed=0, augmentation=config.augmentation())
    kind = "tf.data" if hasattr(dataset, "map") else type(dataset).__name__
    return dataset, f"train_stream ({kind}, one warp per image{', random crop' if config.crop else ''})"


def augmentation_settings() -> dict[str, object]:
    """ImageDataGenerator arguments with the magnitudes of training's default Augmentation."""
    from app.core.training.augment import Augmentation

    aug = Augmentation.from_strength(1.0)
    return {"horizontal_flip": aug.flip, "rotation_range": aug.rotation_deg, "width_shift_range": aug.shift,
            "height_shift_range": aug.shift, "zoom_range": aug.zoom, "fill_mode": "reflect"}


def _image_data_generator_class():
    """ImageDataGenerator as the reference posts used it: tf_keras's where TensorFlow is the backend, else the
    identical copy Keras 3 still ships (``keras.src.legacy``), which runs without TensorFlow (a JAX GPU
    machine). Both need scipy. Returns (class, where it came from) or (None, why not)."""
    import keras

    try:
        import scipy  # noqa: F401
    except ImportError as exc:
        return None, f"{exc}"
    if keras.backend.backend() == "tensorflow":
        try:
            from tf_keras.preprocessing.image import ImageDataGenerator

            return ImageDataGenerator, "tf_keras"
        except ImportError:
            pass
    try:
        from keras.src.legacy.preprocessing.image import ImageDataGenerator
    except ImportError as exc:
        return None, f"{exc}"
    return ImageDataGenerator, "keras.src.legacy"


def reference_iterator(x: np.ndarray, y: np.ndarray, batch_size: int):
    """ImageDataGenerator.flow as in the reference posts, or None with the reason when unavailable."""
    import keras  # noqa: F401 - the generator class depends on the backend
    generator_class, origin = _image_data_generator_class()
    if generator_class is None:
        return None, (f"reference side skipped: {origin}. It needs the bench-only packages "
                      "pip install \"tf_keras==2.21.*\" scipy (scipy alone on a non-TensorFlow backend)")
    settings = augmentation_settings()
    generator = generator_class(**settings)
    # The reference normalises the whole array once, before augmentation.
    xf = x.astype(np.float32) / 127.5 - 1.0
    flow = generator.flow(xf, np.eye(7, dtype=np.float32)[y], batch_size=batch_size, shuffle=True, seed=0)

    def batches():
        while True:
            yield next(flow)

    described = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in settings.items())
    return batches(), f"{origin} ImageDataGenerator({described}).flow"


def batch_iterator(dataset):
    """Endless (x, y) batches from a tf.data.Dataset or a keras.utils.PyDataset (the non-TF backends' stream)."""
    if hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__"):
        def batches():
            while True:
                for index in range(len(dataset)):
                    yield dataset[index][:2]
                dataset.on_epoch_end()
        return batches()
    return iter(dataset)


def fixed_batches(x_batch, y_batch):
    """The same batch forever, in the form fit() takes on the active backend."""
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.data.Dataset.from_tensors((x_batch, y_batch)).repeat()

    def batches():
        while True:
            yield x_batch, y_batch
    return batches()


def backend_description() -> str:
    import keras

    name = keras.backend.backend()
    if name == "tensorflow":
        import tensorflow as tf

        onednn = "off" if os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "0" else "on"
        return f"Keras {keras.__version__} on TensorFlow {tf.__version__} (oneDNN {onednn})"
    if name == "jax":
        import jax

        return f"Keras {keras.__version__} on JAX {jax.__version__} ({', '.join(str(d) for d in jax.devices())})"
    return f"Keras {keras.__version__} on {name}"


class EpochTimer:
    """Wall time of each epoch (a Keras callback built lazily so importing this file needs no Keras)."""

    def __new__(cls):
        import keras

        class _Timer(keras.callbacks.Callback):
            def __init__(self) -> None:
                super().__init__()
                self.times: list[float] = []

            def on_epoch_begin(self, epoch, logs=None):
                self._start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.times.append(time.perf_counter() - self._start)

        return _Timer()


def train_rate(make_model, data, steps: int, epochs: int, batch_size: int) -> float:
    """Images/s over epochs 2.. of a fresh model from ``make_model()`` trained on ``data``."""
    import keras

    keras.utils.set_random_seed(0)
    model = make_model()
    timer = EpochTimer()
    model.fit(data, steps_per_epoch=steps, epochs=epochs, verbose=0, callbacks=[timer], shuffle=False)
    timed = timer.times[1:]
    return steps * batch_size * len(timed) / sum(timed)


def pipeline_rate(iterator, batches: int, batch_size: int) -> float:
    """Images/s of the input pipeline alone (no model), after one warm-up batch."""
    next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - start)


SIDES = ("model only", "ours", "reference")


def run_side(side: str, spec: str, args: argparse.Namespace) -> tuple[float, str]:
    """Train one side in a fresh process (``--side``); returns its images/s and what it said of itself."""
    command = [sys.executable, str(Path(__file__).resolve()), "--side", side, "--archs", spec, "--data",
               str(args.data), "--rows", str(args.rows), "--batch-size", str(args.batch_size), "--steps",
               str(args.steps), "--epochs", str(args.epochs)]
    proc = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RATE ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"the {side} side of {spec} failed:\n{proc.stderr[-2000:]}")
    _, rate, described = lines[-1].split(" ", 2)
    return float(rate), described


def side_main(side: str, spec: str, x: np.ndarray, y: np.ndarray, args: argparse.Namespace) -> int:
    """The child process of one side: set up as ``fer-studio train`` would, train, print ``RATE images/s how``."""
    config = arch_config(spec, args.batch_size)
    if side == "reference":
        from app.core.training.augment import center_crop

        ref, ref_name = reference_iterator(center_crop(x, (config.crop, config.crop)) if config.crop else x, y,
                                           args.batch_size)
        if ref is None:
            print(ref_name, file=sys.stderr)
            return 3
        rate = train_rate(lambda: reference_model(config), ref, args.steps, args.epochs, args.batch_size)
        print(f"RATE {rate:.1f} float32, stock Keras, TensorFlow's default threads")
        return 0
    shards, why = our_shards(config)  # first: it fixes the process's thread pools
    from app.core.training.data import even_batch_size
    from app.core.training.fast_layers import resolve_precision

    batch = even_batch_size(args.batch_size, shards)
    config = arch_config(spec, batch)
    ours, _ = our_dataset(config, x, y)
    if side == "model only":
        first_x, first_y = next(batch_iterator(ours))
        data = fixed_batches(first_x, first_y)
    else:
        data = ours
    rate = train_rate(lambda: our_model(config, shards), data, args.steps, args.epochs, batch)
    precision, _ = resolve_precision(config.precision, config.arch)
    print(f"RATE {rate:.1f} {precision}, {shards} shard(s) a batch: {why}")
    return 0


def bench_arch(spec: str, x: np.ndarray, y: np.ndarray, args: argparse.Namespace) -> dict[str, float]:
    """Interleaved rounds of model only / ours / reference for one architecture, each side in a process of
    its own; prints and returns the medians."""
    from app.core.training.augment import center_crop
    from app.core.training.fast_layers import resolve_precision

    config = arch_config(spec, args.batch_size)
    precision, why = resolve_precision(config.precision, config.arch)
    print(f"\n== {spec}: {config.arch}, input {config.model_input_size[0]}x{config.model_input_size[1]}"
          f"{' (random crops of 48x48)' if config.crop else ''}; ours in {precision} ({why}), fused batch norm"
          f"{', small-map kernel gradients' if precision == 'bfloat16' else ''}")
    ours, ours_name = our_dataset(config, x, y)
    ref, ref_name = reference_iterator(center_crop(x, (config.crop, config.crop)) if config.crop else x, y,
                                       args.batch_size)
    print(f"input only  ours      : {pipeline_rate(batch_iterator(ours), args.steps, args.batch_size):9.0f} "
          f"images/s   [{ours_name}]")
    if ref is not None:
        print(f"input only  reference : {pipeline_rate(ref, args.steps, args.batch_size):9.0f} images/s   [{ref_name}]")
    names = [side for side in SIDES if side != "reference" or ref is not None]
    # Interleave the sides, rotating which goes first, and keep each side's median: on a shared machine the
    # load changes from minute to minute, and a fixed order would bias the ratio.
    rates: dict[str, list[float]] = {name: [] for name in names}
    described: dict[str, str] = {}
    for round_ in range(args.repeats):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            rate, described[name] = run_side(name, spec, args)
            rates[name].append(rate)
        print(f"round {round_ + 1}: " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in rates.items()) + " images/s")
    median = {name: float(np.median(values)) for name, values in rates.items()}
    print(f"training    model only: {median['model only']:9.0f} images/s   [one fixed batch repeated: the ceiling]")
    print(f"training    ours      : {median['ours']:9.0f} images/s   [{described['ours']}]")
    if ref is None:
        print(ref_name)
        return median
    print(f"training    reference : {median['reference']:9.0f} images/s   [{described['reference']}]")
    print(f"ratio ours / reference: {median['ours'] / median['reference']:.2f}x")
    return median


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--archs", nargs="+", default=["mini_xception", "vgg:32:44", "vgg:64:44"],
                        help="NAME[:WIDTH[:CROP]] each (default: the live default's, the 30-minute recipe's "
                             "and the photo model members')")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=32, help="training steps per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per side; the first is not timed")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved rounds; the median is kept")
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)  # one side in this process (run_side)
    args = parser.parse_args(argv)
    if args.batch_size % 2:
        parser.error("use an even --batch-size: odd training batches crash TF 2.21 with oneDNN on")
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the first epoch is warm-up)")
    if not args.data.is_file():
        print(f"no data at {args.data}; pass --data path/to/fer2013.csv.gz", file=sys.stderr)
        return 2
    x, y = read_training_rows(args.data, args.rows)
    n = len(x) - len(x) % args.batch_size
    x, y = x[:n], y[:n]
    if args.side:
        return side_main(args.side, args.archs[0], x, y, args)
    print(f"{backend_description()}, {os.cpu_count()} CPU(s) visible; {n} real FER2013 Training rows, batch "
          f"{args.batch_size}, {args.steps} steps x {args.epochs - 1} timed epoch(s) per side")
    results = {spec: bench_arch(spec, x, y, args) for spec in args.archs}
    print("\nsummary (images/s, medians):")
    for spec, median in results.items():
        ratio = f"{median['ours'] / median['reference']:.2f}x" if "reference" in median else "n/a"
        print(f"  {spec:16s} ours {median['ours']:7.0f}  reference {median.get('reference', float('nan')):7.0f}  "
              f"ours/reference {ratio}  (ceiling {median['model only']:.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
