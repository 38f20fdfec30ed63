"""Long FER2013 runs on a GPU under the JAX backend: the same Keras architecture code, one compiled epoch.

``fer-studio train`` feeds Keras's ``fit`` one batch at a time, which suits these 2-core CPU machines. On a GPU a
small net's step takes about a millisecond, so Python per step would cost more than the step: here a whole epoch
(shuffle, augmentation, forward, backward, SGD update for every batch) is one compiled ``jax.lax.scan``, and
the images stay on the GPU as uint8. The model is built by ``architectures.build_model`` and trained through
``model.stateless_call``, so what is saved is the same stock-Keras file ``fer-studio train`` writes (float32
weights, FER Studio metadata) and it loads and scores the same under TensorFlow.

The recipe is ``fer-studio train``'s for crop-trained nets: random ``crop`` windows of the 48x48 face composed
with flip, rotation, shift and zoom into one affine warp per image (``augment._inverse_rows``, the same maths
and the same reflect fill as the TensorFlow input stream), SGD with Nesterov momentum and Keras-style decoupled
weight decay, linear warm-up then cosine decay (``callbacks.cosine_learning_rate``), best epoch by centre-crop
accuracy on PublicTest. With ``--deadline`` the number of epochs is fitted to the time left after the warm-up
epochs, so a run on a machine lent for minutes ends on time with its schedule complete.

A device machine may take only a few tens of megabytes of files, so ``pack`` stores the splits of a FER2013 CSV
as lossless WebP mosaics (1.56 kB a face against 2.3 kB raw) with their labels and SHA-256 digests, which
``train`` checks.

    KERAS_BACKEND=jax python -m app.core.training.gpu_training pack fer2013.csv.gz --out pack/
    KERAS_BACKEND=jax python -m app.core.training.gpu_training train pack/ --out run/ --width 64 --seed 21 \\
        --epochs 300 --deadline 500
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

PACK_INFO = "pack.json"
WARMUP_EPOCHS = 3  # callbacks.cosine_learning_rate's warm-up for runs of 30 epochs or more
MOSAIC_COLUMNS = 128
FACE = 48


def pack_fer2013(csv_path: str, out: str, splits: tuple[str, ...] = ("Training", "PublicTest")) -> dict[str, Any]:
    """Write ``splits`` of a FER2013 CSV to ``out`` as lossless WebP mosaics plus pack.json; return the info."""
    import cv2

    from app.core.datasets import load_fer2013

    raw = load_fer2013(csv_path, splits=list(splits))
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    info: dict[str, Any] = {"source": os.path.basename(csv_path), "splits": {}}
    for name in splits:
        images = raw[name].images[..., 0]
        rows = math.ceil(len(images) / MOSAIC_COLUMNS)
        padded = np.zeros((rows * MOSAIC_COLUMNS, FACE, FACE), np.uint8)
        padded[:len(images)] = images
        mosaic = padded.reshape(rows, MOSAIC_COLUMNS, FACE, FACE).transpose(0, 2, 1, 3).reshape(rows * FACE, -1)
        ok, encoded = cv2.imencode(".webp", mosaic, [cv2.IMWRITE_WEBP_QUALITY, 101])  # 101: lossless
        if not ok:
            raise RuntimeError(f"could not encode {name} as WebP")
        (folder / f"{name}.webp").write_bytes(encoded.tobytes())
        info["splits"][name] = {"count": int(len(images)), "labels": raw[name].labels.astype(int).tolist(),
                                "sha256": hashlib.sha256(images.tobytes()).hexdigest()}
    (folder / PACK_INFO).write_text(json.dumps(info), encoding="utf-8")
    return info


def load_pack(folder: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 48, 48) uint8, labels (N,) int32) of one split of a pack, checked against its digest."""
    import cv2

    info = json.loads((Path(folder) / PACK_INFO).read_text(encoding="utf-8"))["splits"][name]
    mosaic = cv2.imdecode(np.fromfile(str(Path(folder) / f"{name}.webp"), np.uint8), cv2.IMREAD_GRAYSCALE)
    if mosaic is None:
        raise RuntimeError(f"{folder}: cannot decode {name}.webp")
    rows = mosaic.shape[0] // FACE
    images = mosaic.reshape(rows, FACE, MOSAIC_COLUMNS, FACE).transpose(0, 2, 1, 3).reshape(-1, FACE, FACE)
    images = np.ascontiguousarray(images[:info["count"]])
    if hashlib.sha256(images.tobytes()).hexdigest() != info["sha256"]:
        raise RuntimeError(f"{folder}: {name} does not match its digest")
    return images, np.asarray(info["labels"], np.int32)


def _reflect(index: Any, size: int) -> Any:
    """TensorFlow's REFLECT fill (d c b a | a b c d | d c b a) for integer positions of any range."""
    import jax.numpy as jnp

    period = jnp.mod(index, 2 * size)
    return jnp.where(period >= size, 2 * size - 1 - period, period)


def augment_batch_jax(images: Any, key: Any, crop: int, strength: float = 1.0) -> Any:
    """(N, 48, 48) float images -> (N, crop, crop) warped by one random affine each (bilinear, reflect fill).

    The same draws as ``augment.augment_batch_tf``: flip, rotation up to 14.4 degrees, shift up to 10% of the
    side plus the crop's slack, zoom up to 10%, all scaled by ``strength``.
    """
    import jax

    return warp_batch_jax(images, jax.random.uniform(key, (5, images.shape[0])), crop, strength)


def warp_batch_jax(images: Any, u: Any, crop: int, strength: float = 1.0) -> Any:
    """``augment_batch_jax`` for given draws ``u`` (5, N) in [0, 1): angle, flip, zoom, x shift, y shift."""
    import jax.numpy as jnp

    from app.core.training.augment import _inverse_rows

    n, size = images.shape[0], images.shape[1]
    slack = (size - crop) / 2.0
    signed = 2.0 * u - 1.0
    angle = signed[0] * math.radians(14.4 * strength)
    flip = jnp.where(u[1] < 0.5, -1.0, 1.0)
    scale = 1.0 + signed[2] * 0.1 * strength
    tx = signed[3] * (0.1 * strength * size + slack)
    ty = signed[4] * (0.1 * strength * size + slack)
    a0, a1, a2, b0, b1, b2 = _inverse_rows(jnp.cos(angle), jnp.sin(angle), flip, scale, tx, ty,
                                           (size, size), (crop, crop))
    grid = jnp.arange(crop, dtype=jnp.float32)
    xs, ys = grid[None, None, :], grid[None, :, None]
    src_x = a0[:, None, None] * xs + a1[:, None, None] * ys + a2[:, None, None]
    src_y = b0[:, None, None] * xs + b1[:, None, None] * ys + b2[:, None, None]
    x0, y0 = jnp.floor(src_x), jnp.floor(src_y)
    wx, wy = src_x - x0, src_y - y0
    x0, y0 = x0.astype(jnp.int32), y0.astype(jnp.int32)
    flat = images.reshape(n, size * size)

    def tap(yy: Any, xx: Any) -> Any:
        index = _reflect(yy, size) * size + _reflect(xx, size)
        return jnp.take_along_axis(flat, index.reshape(n, -1), axis=1).reshape(n, crop, crop)

    top = tap(y0, x0) * (1 - wx) + tap(y0, x0 + 1) * wx
    bottom = tap(y0 + 1, x0) * (1 - wx) + tap(y0 + 1, x0 + 1) * wx
    return top * (1 - wy) + bottom * wy


def ten_crops_jax(images: Any, crop: int) -> list[Any]:
    """The four corner windows and the centre one of (N, S, S) images, each with its mirror image."""
    size = images.shape[1]
    top = (size - crop) // 2
    starts = [(0, 0), (0, size - crop), (size - crop, 0), (size - crop, size - crop), (top, top)]
    views = [images[:, y:y + crop, x:x + crop] for y, x in starts]
    return views + [v[:, :, ::-1] for v in views]


def train(pack: str, out: str, width: int = 64, crop: int = 44, epochs: int = 300, batch_size: int = 128,
          lr: float = 0.02, weight_decay: float = 5e-4, seed: int = 21, deadline: float | None = None,
          precision: str = "bfloat16", limit: int | None = None, log: Any = sys.stdout) -> dict[str, Any]:
    """Train a crop-trained VGG of ``width`` on a pack; write best.h5 (best PublicTest centre crop) to ``out``.

    ``deadline`` (seconds from the start of this call) fits the number of epochs (at most ``epochs``) to the
    time: after the warm-up the cosine runs on the clock and ends 20 s before it; ``limit`` trains on the first
    ``limit`` faces only (a smoke test); every epoch's numbers go to ``log`` as one JSON line.
    """
    import jax
    import jax.numpy as jnp
    import keras

    from app.core.labels import default_labels
    from app.core.model_io import ModelSpec, save_model
    from app.core.training.architectures import build_model
    from app.core.training.callbacks import cosine_decay, cosine_learning_rate

    start = time.time()
    if batch_size < 2 or batch_size % 2:
        raise ValueError(f"the batch size must be even (oneDNN and some GPU kernels), not {batch_size}")
    if epochs < 1:
        raise ValueError(f"--epochs must be at least 1, not {epochs}")
    x_train, y_train = load_pack(pack, "Training")
    x_val, y_val = load_pack(pack, "PublicTest")
    if limit:
        x_train, y_train, x_val, y_val = x_train[:limit], y_train[:limit], x_val[:limit], y_val[:limit]
    steps = len(x_train) // batch_size
    if steps == 0:
        raise ValueError(f"{len(x_train)} training faces are fewer than one batch of {batch_size}")
    keras.utils.set_random_seed(seed)
    keras.config.set_dtype_policy("mixed_bfloat16" if precision == "bfloat16" else "float32")
    model = build_model("vgg", (crop, crop, 1), 7, width=width)
    keras.config.set_dtype_policy("float32")
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    velocity = [jnp.zeros_like(w) for w in trainable]

    images = jnp.asarray(x_train)
    labels = jnp.asarray(y_train)
    val_images = jnp.asarray(x_val, jnp.float32) / 127.5 - 1.0

    def loss_fn(weights: list, state: list, x: Any, y: Any) -> tuple[Any, tuple[list, Any]]:
        probs, state = model.stateless_call(weights, state, x[..., None], training=True)
        probs = probs.astype(jnp.float32)
        loss = -jnp.mean(jnp.log(jnp.clip(jnp.take_along_axis(probs, y[:, None], axis=1), 1e-7, 1.0)))
        return loss, (state, jnp.mean(jnp.argmax(probs, axis=1) == y))

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    @jax.jit
    def run_epoch(weights: list, state: list, vel: list, key: Any, rates: Any, images: Any, labels: Any) -> tuple:
        # The data are arguments, not constants baked into the compiled program.
        def step(carry: tuple, inputs: tuple) -> tuple[tuple, tuple]:
            weights, state, vel = carry
            index, step_key, rate = inputs
            x = augment_batch_jax(images[index].astype(jnp.float32) / 127.5 - 1.0, step_key, crop)
            (loss, (state, accuracy)), grads = grad_fn(weights, state, x, labels[index])
            # Keras SGD(momentum=0.9, nesterov=True, weight_decay): decoupled decay, then the Nesterov step.
            weights = [w - w * weight_decay * rate for w in weights]
            vel = [0.9 * v - rate * g for v, g in zip(vel, grads)]
            weights = [w + 0.9 * v - rate * g for w, v, g in zip(weights, vel, grads)]
            return (weights, state, vel), (loss, accuracy)

        order_key, aug_key = jax.random.split(key)
        order = jax.random.permutation(order_key, len(x_train))[:steps * batch_size].reshape(steps, batch_size)
        keys = jax.random.split(aug_key, steps)
        (weights, state, vel), (losses, accuracies) = jax.lax.scan(step, (weights, state, vel), (order, keys, rates))
        return weights, state, vel, jnp.mean(losses), jnp.mean(accuracies)

    @jax.jit
    def predict(weights: list, state: list, x: Any) -> Any:
        probs, _ = model.stateless_call(weights, state, x[..., None], training=False)
        return probs.astype(jnp.float32)

    def val_probs(weights: list, state: list, views: list) -> np.ndarray:
        total = 0
        for view in views:
            total = total + np.concatenate([np.asarray(predict(weights, state, view[i:i + 512]))
                                            for i in range(0, len(x_val), 512)])
        return total

    top = (FACE - crop) // 2
    centre = [val_images[:, top:top + crop, top:top + crop]]
    key = jax.random.PRNGKey(seed)
    best = {"accuracy": -1.0, "epoch": 0, "weights": None}
    epoch_times: list[float] = []
    # With a deadline, the cosine after the warm-up runs on the clock: each step's rate comes from the time
    # it is expected to run at (the last epoch's pace), so a pace that changes (another run finishing beside
    # this one) bends the schedule instead of overrunning it; the run stops when the next epoch would not fit.
    train_end = None if deadline is None else deadline - 20.0
    warm_end: float | None = None
    for epoch in range(epochs):
        began = time.time()
        elapsed = began - start
        if train_end is not None and epoch >= WARMUP_EPOCHS:
            pace = epoch_times[-1]
            if elapsed + pace > train_end:
                break
            warm_end = elapsed if warm_end is None else warm_end
            span = max(train_end - warm_end, 1e-3)
            rates_list = [cosine_decay((elapsed + pace * s / steps - warm_end) / span, lr) for s in range(steps)]
        else:
            rates_list = [cosine_learning_rate(epoch * steps + s, lr, epochs, steps) for s in range(steps)]
        rates = jnp.asarray(rates_list, jnp.float32)
        key, epoch_key = jax.random.split(key)
        trainable, non_trainable, velocity, loss, accuracy = run_epoch(trainable, non_trainable, velocity,
                                                                       epoch_key, rates, images, labels)
        val_accuracy = float(np.mean(np.argmax(val_probs(trainable, non_trainable, centre), 1) == y_val))
        epoch_times.append(time.time() - began)
        if val_accuracy > best["accuracy"]:
            best = {"accuracy": val_accuracy, "epoch": epoch + 1,
                    "weights": [np.asarray(w) for w in trainable] + [np.asarray(w) for w in non_trainable]}
        print(json.dumps({"seed": seed, "epoch": epoch + 1, "loss": round(float(loss), 4),
                          "accuracy": round(float(accuracy), 4), "val_accuracy": round(val_accuracy, 4),
                          "lr": round(rates_list[0], 6), "seconds": round(epoch_times[-1], 2)}), file=log,
              flush=True)
    planned = len(epoch_times)

    # The saved file: float32 layers (the same architecture built under the float32 policy), best weights.
    saved = build_model("vgg", (crop, crop, 1), 7, width=width)
    for variable, value in zip(saved.trainable_variables + saved.non_trainable_variables, best["weights"]):
        variable.assign(value)
    ten = ten_crops_jax(val_images, crop)
    ten_accuracy = float(np.mean(np.argmax(val_probs([v.value for v in saved.trainable_variables],
                                                     [v.value for v in saved.non_trainable_variables], ten), 1)
                                 == y_val))
    info = {"epoch": best["epoch"], "epochs": planned, "seed": seed, "width": width, "batch_size": batch_size,
            "lr": lr, "weight_decay": weight_decay, "optimizer": "sgd", "schedule": "cosine", "crop": crop,
            "precision": precision, "backend": "jax", "device": str(jax.devices()[0]),
            "val_accuracy": best["accuracy"], "val_accuracy_ten_crops": ten_accuracy,
            "seconds": round(time.time() - start, 1), "trainer": "app.core.training.gpu_training"}
    spec = ModelSpec(labels=tuple(default_labels(7)), input_size=(crop, crop), channels=1,
                     normalization="minus1_1", arch="vgg", crop_from=(FACE, FACE), info=info)
    save_model(saved, Path(out) / "best.h5", spec)
    print(json.dumps({"seed": seed, "done": info}), file=log, flush=True)
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.core.training.gpu_training",
                                     description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("pack", help="store FER2013 splits as lossless WebP mosaics")
    p.add_argument("csv")
    p.add_argument("--out", required=True)
    t = commands.add_parser("train", help="train a crop-trained VGG on a pack (KERAS_BACKEND=jax)")
    t.add_argument("pack")
    t.add_argument("--out", required=True)
    t.add_argument("--width", type=int, default=64)
    t.add_argument("--crop", type=int, default=44)
    t.add_argument("--epochs", type=int, default=300)
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--lr", type=float, default=0.02)
    t.add_argument("--weight-decay", type=float, default=5e-4)
    t.add_argument("--seed", type=int, default=21)
    t.add_argument("--deadline", type=float, default=None, help="seconds: fit the epochs to this time")
    t.add_argument("--precision", choices=("bfloat16", "float32"), default="bfloat16")
    t.add_argument("--limit", type=int, default=None, help="train on the first LIMIT faces (a smoke test)")
    args = parser.parse_args(argv)
    from app.core.errors import DatasetError, OutputError

    try:
        if args.command == "pack":
            info = pack_fer2013(args.csv, args.out)
            print(json.dumps({name: split["count"] for name, split in info["splits"].items()}))
            return 0
        if os.environ.get("KERAS_BACKEND") != "jax":
            print("error: set KERAS_BACKEND=jax: this trainer runs on the JAX backend", file=sys.stderr)
            return 2
        train(args.pack, args.out, args.width, args.crop, args.epochs, args.batch_size, args.lr,
              args.weight_decay, args.seed, args.deadline, args.precision, args.limit)
    except (DatasetError, OutputError, RuntimeError, ValueError, OSError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
