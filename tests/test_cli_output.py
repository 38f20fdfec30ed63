"""What a user sees on the terminal: no TensorFlow start-up notices, and the real output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from app.core.tf_quiet import is_noise

REPO = Path(__file__).resolve().parents[1]
NOTICES = ("oneDNN", "cuInit", "cuda drivers", "absl::InitializeLog", "cudart_stub")


def test_predict_stderr_has_no_tensorflow_startup_lines(data_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}  # as a user's shell has it
    done = subprocess.run([sys.executable, "-m", "app.cli", "predict", str(data_dir / "justin.jpg"), "--json"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert '"label": "happy"' in done.stdout
    assert not [line for line in done.stderr.splitlines() if any(n in line for n in NOTICES)], done.stderr


def test_noise_filter_keeps_real_errors() -> None:
    assert is_noise("I0000 00:00:1.2  8638 port.cc:153] oneDNN custom operations are on. You may see")
    assert is_noise("E0000 00:00:1.2  8638 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error")
    assert not is_noise("E0000 00:00:1.2  8638 some_op.cc:10] OOM when allocating tensor")
    assert not is_noise("Traceback (most recent call last):")
