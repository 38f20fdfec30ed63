"""The training engine on Keras 3's JAX backend (what a GPU machine without TensorFlow runs), and the
model it saves used under TensorFlow, as the app uses it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from app.core.datasets import load_fer2013
from app.core.labels import FER2013_LABELS
from app.core.model_io import load_model

REPO = Path(__file__).resolve().parents[1]

TRAIN_AND_PREDICT = """
import sys, numpy as np, keras
from app.cli import main
from app.core.datasets import load_fer2013
from app.core.model_io import load_model
data, out, preds = sys.argv[1:4]
assert keras.backend.backend() == "jax", keras.backend.backend()
code = main(["train", data, "--out", out, "--epochs", "2", "--batch-size", "32", "--mixup", "--random-erasing"])
assert code == 0, code
rows = load_fer2013(data, splits=["PublicTest"])["PublicTest"]
model = load_model(out + "/best.h5").model
np.save(preds, np.asarray(model.predict(rows.images.astype(np.float32) / 127.5 - 1.0, verbose=0)))
"""


def test_jax_trained_model_loads_and_predicts_the_same_under_tensorflow(tmp_path, fer_sample):
    pytest.importorskip("jax")
    out, preds = tmp_path / "out", tmp_path / "jax_predictions.npy"
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", TRAIN_AND_PREDICT, str(fer_sample), str(out), str(preds)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "epoch 2/2" in proc.stdout

    loaded = load_model(out / "best.h5")  # this process runs TensorFlow
    assert loaded.spec.labels == FER2013_LABELS and loaded.spec.arch == "mini_xception"
    assert loaded.spec.info["config"]["mixup"] == 0.2
    rows = load_fer2013(fer_sample, splits=["PublicTest"])["PublicTest"]
    tf_predictions = np.asarray(loaded.model.predict(rows.images.astype(np.float32) / 127.5 - 1.0, verbose=0))
    jax_predictions = np.load(preds)
    np.testing.assert_allclose(tf_predictions, jax_predictions, atol=1e-5)
    assert np.allclose(tf_predictions.sum(axis=1), 1.0, atol=1e-4)
