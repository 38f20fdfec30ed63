"""Training throughput (images/s): our input pipeline vs the reference posts' ImageDataGenerator.

Both sides train the same mini_XCEPTION (app.core.training.architectures) on the same real FER2013 Training rows,
with the same batch size, the same number of steps and the same augmentation (horizontal flip, rotation,
shift, zoom: the factors and fill mode are read from app.core.training.data.build_augmenter, so the two
sides stay equal when it changes):

- ours, exactly as ``fer-studio train`` composes it: ``app.core.training.data.train_stream`` (tf.data:
  index shuffle -> full even batches -> gather + normalise on whole batches, num_parallel_calls, prefetch)
  feeding a model whose first block is ``build_augmenter()`` (Keras preprocessing layers, on batches).
- reference: ``tf_keras.preprocessing.image.ImageDataGenerator(...).flow(x, y, batch_size)`` feeding
  ``model.fit`` (wrapped in a generator, which is how Keras 3 takes a Python iterator) and the bare
  mini_XCEPTION, as in the reference blog posts.
- model only: the bare mini_XCEPTION on one fixed batch, repeated: no input work at all. This is the
  ceiling no input pipeline can beat on this machine, so the ratio can reach the 3x target only where
  the model step is much faster than ImageDataGenerator (a GPU); on a small CPU the model dominates.

Bench-only dependencies (never in install_requires): ``tf_keras`` (``pip install "tf_keras==2.21.*"``)
and ``scipy`` (ImageDataGenerator's rotations/shifts/zooms use scipy.ndimage). Without them only our
side is measured and a message says what to install.

Any Keras backend: with ``KERAS_BACKEND=jax`` (a GPU machine without TensorFlow) "ours" is what
``fer-studio train`` runs on that backend (app.core.training.data.NumpyBatches feeding the same model, the
augmentation compiled into the training step) and the reference is the copy of ImageDataGenerator that
Keras 3 itself still ships (``keras.src.legacy.preprocessing.image``, the same code as tf_keras's), so the
comparison runs where the model step is fast enough for the input pipeline to matter. It needs the keras,
namex and optree wheels carried there, plus scipy (present on the device image).

oneDNN caveat: with TF 2.20/2.21 and oneDNN on, a training step on an odd-sized batch crashes; every side
here uses an even batch size and whole batches only (``--rows`` is rounded down to a multiple of it).

Usage: python bench/train_throughput.py [--data ../shared/data/fer2013.csv.gz] [--rows 4096]
       [--batch-size 64] [--steps 32] [--epochs 3] [--repeats 2]
Each side trains ``--epochs`` epochs of ``--steps`` steps; the first epoch (tracing, warm-up) is not
timed. Numbers depend on the machine and on whatever else runs on it: compare the ratio, not the rates.
"""

from __future__ import annotations

import argparse
import gzip
import os
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


def compile_model(model):
    import keras

    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def bare_model():
    from app.core.training.architectures import build_model

    return compile_model(build_model("mini_xception", (48, 48, 1), 7))


def our_model():
    """Augmentation layers + mini_XCEPTION, composed as app.core.training builds its training model."""
    import keras

    from app.core.training.architectures import build_model
    from app.core.training.data import build_augmenter

    inputs = keras.Input((48, 48, 1), name="image")
    x = build_augmenter(seed=0)(inputs)
    return compile_model(keras.Model(inputs, build_model("mini_xception", (48, 48, 1), 7)(x)))


def our_dataset(x: np.ndarray, y: np.ndarray, batch_size: int):
    from app.core.training.data import train_stream

    dataset, _ = train_stream(x, y, 7, batch_size, "minus1_1", seed=0)
    kind = "tf.data" if hasattr(dataset, "map") else type(dataset).__name__
    return dataset, f"app.core.training.data.train_stream ({kind}) + build_augmenter layers in the model"


def augmentation_settings() -> dict[str, object]:
    """ImageDataGenerator arguments equal to build_augmenter()'s layers."""
    from app.core.training.data import build_augmenter

    settings: dict[str, object] = {}
    for layer in build_augmenter().layers:
        config = layer.get_config()
        name = type(layer).__name__
        if name == "RandomFlip":
            settings["horizontal_flip"] = "horizontal" in config["mode"]
            settings["vertical_flip"] = "vertical" in config["mode"]
        elif name == "RandomRotation":
            factor = config["factor"]
            settings["rotation_range"] = 360.0 * float(max(abs(f) for f in np.atleast_1d(factor)))
            settings["fill_mode"] = config["fill_mode"]
        elif name == "RandomTranslation":
            settings["height_shift_range"] = float(np.max(np.abs(config["height_factor"])))
            settings["width_shift_range"] = float(np.max(np.abs(config["width_factor"])))
        elif name == "RandomZoom":
            settings["zoom_range"] = float(np.max(np.abs(config["height_factor"])))
    return settings


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=32, help="training steps per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per side; the first is not timed")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved rounds; the median is kept")
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

    print(f"{backend_description()}, {os.cpu_count()} CPU(s) visible; {n} real FER2013 Training rows, batch {args.batch_size}, "
          f"{args.steps} steps x {args.epochs - 1} timed epoch(s) per side, mini_xception")

    ours, ours_name = our_dataset(x, y, args.batch_size)
    ref, ref_name = reference_iterator(x, y, args.batch_size)

    from app.core.training.data import build_augmenter

    augment = build_augmenter(seed=0)  # in training it runs inside the model; here alone, on the same batches
    if hasattr(ours, "map"):  # tf.data: augmentation mapped in parallel, as it runs in the training step
        import tensorflow as tf

        augmented = iter(ours.map(lambda xb, yb: (augment(xb, training=True), yb),
                                  num_parallel_calls=tf.data.AUTOTUNE))
    else:  # other backends: eager calls here; compiled into the training step in training
        augmented = ((augment(xb, training=True), yb) for xb, yb in batch_iterator(ours))
    ours_pipe = pipeline_rate(augmented, args.steps, args.batch_size)
    print(f"input only  ours      : {ours_pipe:9.0f} images/s   [{ours_name}]")
    if ref is not None:
        ref_pipe = pipeline_rate(ref, args.steps, args.batch_size)
        print(f"input only  reference : {ref_pipe:9.0f} images/s   [{ref_name}]")

    # The ceiling: the same training with no input work at all (one fixed batch, repeated).
    first_x, first_y = next(batch_iterator(ours))
    sides = {"model only": (bare_model, lambda: fixed_batches(first_x, first_y)), "ours": (our_model, lambda: ours)}
    if ref is not None:
        sides["reference"] = (bare_model, lambda: ref)
    # Interleave the sides over --repeats rounds, rotating which goes first, and keep each side's median: on a
    # shared machine the load changes from minute to minute, and a fixed order would bias the ratio.
    rates: dict[str, list[float]] = {name: [] for name in sides}
    names = list(sides)
    for round_ in range(args.repeats):
        shift = round_ % len(names)  # each round starts with another side: no side always runs first
        for name in names[shift:] + names[:shift]:
            make_model, data = sides[name]
            rates[name].append(train_rate(make_model, data(), args.steps, args.epochs, args.batch_size))
        print(f"round {round_ + 1}: " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in rates.items()) + " images/s")
    median = {name: float(np.median(values)) for name, values in rates.items()}
    ceiling = median["model only"]
    print(f"training    model only: {ceiling:9.0f} images/s   [one fixed batch repeated: the ceiling]")
    print(f"training    ours      : {median['ours']:9.0f} images/s   "
          f"({100 * median['ours'] / ceiling:.0f}% of the ceiling)")
    if ref is None:
        print(ref_name)
        return 0
    print(f"training    reference : {median['reference']:9.0f} images/s   "
          f"({100 * median['reference'] / ceiling:.0f}% of the ceiling)")
    print(f"ratio ours / reference: {median['ours'] / median['reference']:.2f}x (target >= 3x); "
          f"ceiling / reference = {ceiling / median['reference']:.2f}x bounds what any input pipeline "
          "could gain with this model on this machine")
    if median["ours"] > 1.1 * ceiling:
        print("note: a side ran faster than the ceiling, so the machine's load changed during the run; "
              "rerun with more --repeats when it is quieter")
    return 0


if __name__ == "__main__":
    sys.exit(main())
