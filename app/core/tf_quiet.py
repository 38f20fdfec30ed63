"""Keep TensorFlow's C++ start-up lines out of the user's terminal and the training dialog's log.

TensorFlow 2.21 prints, on every start, lines written before its logging is set up (so
``TF_CPP_MIN_LOG_LEVEL`` cannot hide them): the oneDNN notice, "Could not find cuda drivers", the
failed ``cuInit`` on a machine without a GPU. :func:`import_tensorflow_quietly` imports TensorFlow and
initialises its devices with file descriptor 2 sent to a temporary file, then writes back every line
that is not one of those known notices, so a real error still reaches stderr. :func:`is_noise` is the
same test for a line read from a child process (the training dialog filters its log with it).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import threading
from typing import Any

logger = logging.getLogger(__name__)

#: TensorFlow's start-up notices that say nothing a user can act on (CPU-only machines, oneDNN, XLA/CUDA
#: plug-ins registering twice). Anything else on stderr is kept.
NOISE = re.compile("|".join((
    r"All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    r"oneDNN custom operations are on",
    r"Could not find cuda drivers on your machine",
    r"failed call to cuInit",
    r"Unable to register cu(DNN|FFT|BLAS) factory",
    r"computation placer already registered",
    r"This TensorFlow binary is optimized to use available CPU instructions",
    r"To enable the following instructions: .* in other operations, rebuild TensorFlow",
    r"TF-TRT Warning: Could not find TensorRT",
    r"cuda_executor\.cc.*(NUMA node|could not open file to read NUMA)",
)))

_lock = threading.Lock()
_done = False


def is_noise(line: str) -> bool:
    """True for one of TensorFlow's known start-up notices."""
    return bool(NOISE.search(line))


def import_tensorflow_quietly() -> Any:
    """``import tensorflow`` (and initialise its devices) without its start-up notices; returns the module.

    Idempotent and thread-safe. Lines other than the known notices are written back to stderr.
    """
    global _done
    with _lock:
        if _done or "tensorflow" in sys.modules:
            _done = True
            import tensorflow as tf

            return tf
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        captured = b""
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):  # no usable fd 2 (an embedded interpreter)
            saved = None
        with tempfile.TemporaryFile() as sink:
            if saved is not None:
                os.dup2(sink.fileno(), 2)
            try:
                import tensorflow as tf

                tf.config.list_physical_devices()  # device start-up (cuInit) happens here, still captured
            finally:
                if saved is not None:
                    os.dup2(saved, 2)
                    os.close(saved)
                    sink.seek(0)
                    captured = sink.read()
        _done = True
    kept = [line for line in captured.decode("utf-8", "replace").splitlines() if line and not is_noise(line)]
    if kept:
        sys.stderr.write("\n".join(kept) + "\n")
        sys.stderr.flush()
    return tf
