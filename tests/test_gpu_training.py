"""The GPU trainer (app.core.training.gpu_training): its data pack, its JAX augmentation against TensorFlow's
own warp, its clock-driven schedule, and a real (tiny) run under the JAX backend whose saved file scores the
same under TensorFlow, through the app's safe loader."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from app.core.datasets import load_fer2013
from app.core.labels import FER2013_LABELS
from app.core.model_io import load_model
from app.core.training.augment import _inverse_rows
from app.core.training.callbacks import cosine_decay
from app.core.training.gpu_training import PACK_INFO, load_pack, pack_fer2013

REPO = Path(__file__).resolve().parents[1]


def test_pack_holds_the_splits_losslessly(tmp_path, fer_sample):
    info = pack_fer2013(str(fer_sample), str(tmp_path / "pack ünïcode"))
    raw = load_fer2013(fer_sample, splits=["Training", "PublicTest"])
    for name in ("Training", "PublicTest"):
        images, labels = load_pack(str(tmp_path / "pack ünïcode"), name)
        assert info["splits"][name]["count"] == len(raw[name].images)
        np.testing.assert_array_equal(images, raw[name].images[..., 0])
        np.testing.assert_array_equal(labels, raw[name].labels)


def test_a_pack_that_does_not_match_its_digest_is_refused(tmp_path, fer_sample):
    pack_fer2013(str(fer_sample), str(tmp_path))
    info = json.loads((tmp_path / PACK_INFO).read_text())
    info["splits"]["PublicTest"]["sha256"] = "0" * 64
    (tmp_path / PACK_INFO).write_text(json.dumps(info))
    with pytest.raises(RuntimeError, match="digest"):
        load_pack(str(tmp_path), "PublicTest")


def test_jax_warp_equals_tensorflows_projective_transform(fer_sample):
    jnp = pytest.importorskip("jax.numpy")
    import tensorflow as tf

    from app.core.training.gpu_training import warp_batch_jax

    faces = load_fer2013(fer_sample, splits=["Training"])["Training"].images[:32, ..., 0]
    images = faces.astype(np.float32) / 127.5 - 1.0
    u = np.random.default_rng(0).random((5, len(images))).astype(np.float32)
    ours = np.asarray(warp_batch_jax(jnp.asarray(images), jnp.asarray(u), 44))

    # The same draws through augment.py's maths and TensorFlow's op (augment_batch_tf's path).
    signed = 2.0 * u - 1.0
    angle = signed[0] * math.radians(14.4)
    flip = np.where(u[1] < 0.5, -1.0, 1.0)
    rows = _inverse_rows(np.cos(angle), np.sin(angle), flip, 1.0 + signed[2] * 0.1, signed[3] * (4.8 + 2.0),
                         signed[4] * (4.8 + 2.0), (48, 48), (44, 44))
    transforms = np.stack([*rows, np.zeros(len(images)), np.zeros(len(images))], axis=1).astype(np.float32)
    theirs = tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.constant(images[..., None]), transforms=transforms, output_shape=tf.constant([44, 44]),
        fill_value=0.0, interpolation="BILINEAR", fill_mode="REFLECT").numpy()[..., 0]
    assert ours.shape == (32, 44, 44)
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
    # and it is a real augmentation: not the centre window
    assert np.abs(ours - images[:, 2:46, 2:46]).mean() > 0.05


def test_cosine_decay_runs_from_the_peak_to_the_floor():
    assert cosine_decay(0.0, 0.02) == pytest.approx(0.02)
    assert cosine_decay(0.5, 0.02) == pytest.approx(0.02 * (0.99 * 0.5 + 0.01))
    assert cosine_decay(1.0, 0.02) == pytest.approx(0.0002)
    assert cosine_decay(1.7, 0.02) == pytest.approx(0.0002)  # held at the floor past the deadline
    assert cosine_decay(-0.1, 0.02) == pytest.approx(0.02)


def _run(args: list[str], env_backend: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "KERAS_BACKEND": env_backend, "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, "-m", "app.core.training.gpu_training", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)


def test_a_jax_run_saves_a_model_that_scores_the_same_under_tensorflow(tmp_path, fer_sample):
    pytest.importorskip("jax")
    pack, out = tmp_path / "pack", tmp_path / "run"
    assert _run(["pack", str(fer_sample), "--out", str(pack)], "jax").returncode == 0
    refused = _run(["train", str(pack), "--out", str(out)], "tensorflow")
    assert refused.returncode == 2 and "KERAS_BACKEND=jax" in refused.stderr

    proc = _run(["train", str(pack), "--out", str(out), "--width", "8", "--epochs", "2", "--batch-size", "32",
                 "--precision", "float32", "--seed", "3"], "jax")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    epochs = [line for line in lines if "epoch" in line and "done" not in line]
    assert [line["epoch"] for line in epochs] == [1, 2]
    assert all(np.isfinite(line["loss"]) for line in epochs)
    done = lines[-1]["done"]

    loaded = load_model(out / "best.h5")  # this process runs TensorFlow; the safe loader, no custom objects
    spec = loaded.spec
    assert spec.labels == FER2013_LABELS and spec.arch == "vgg"
    assert spec.input_size == (44, 44) and spec.crop_from == (48, 48)
    assert spec.info["backend"] == "jax" and spec.info["epoch"] == done["epoch"]
    assert all(w.dtype == np.float32 for w in loaded.model.get_weights())
    images, labels = load_pack(str(pack), "PublicTest")
    probs = loaded.model.predict(images[:, 2:46, 2:46, None].astype(np.float32) / 127.5 - 1.0, verbose=0)
    assert np.mean(np.argmax(probs, axis=1) == labels) == pytest.approx(done["val_accuracy"])


def test_bad_input_gets_a_message_not_a_traceback(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("emotion,pixels,Usage\n9,1 2 3,Training\n")
    proc = _run(["pack", str(bad), "--out", str(tmp_path / "pack")], "jax")
    assert proc.returncode == 1 and proc.stderr.startswith("error:") and "Traceback" not in proc.stderr
    proc = _run(["train", str(tmp_path / "missing"), "--out", str(tmp_path / "run")], "jax")
    assert proc.returncode == 1 and "error:" in proc.stderr and "Traceback" not in proc.stderr
