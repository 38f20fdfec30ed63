"""Training progress as events: JSON lines for the GUI's training process, readable lines for a terminal.

Keras-free, so the CLI can parse arguments without importing TensorFlow; the Keras callbacks that produce
the events live in training_callbacks.py.

Event kinds: start, batch, epoch_end, checkpoint, report, done, error (see app/commands/train.py).
"""

from __future__ import annotations

import json
import logging
import math
import sys
from pathlib import Path
from typing import Any, TextIO

import numpy as np

logger = logging.getLogger(__name__)


def _plain(value: Any) -> Any:
    """JSON-safe version of numpy scalars / NaN."""
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class EventSink:
    """Receives training events. The base class logs them; subclasses print them."""

    def emit(self, event: str, **fields: Any) -> None:
        logger.debug("%s %s", event, fields)


class JsonLinesSink(EventSink):
    """One JSON object per line on a stream (stdout for `--events jsonl`), flushed at once."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def emit(self, event: str, **fields: Any) -> None:
        self.stream.write(json.dumps({"event": event, **_plain(fields)}) + "\n")
        self.stream.flush()


class ConsoleSink(EventSink):
    """Readable progress for a person at a terminal."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def emit(self, event: str, **fields: Any) -> None:
        f = _plain(fields)
        if event == "start":
            line = (f"training {f['arch']} on {f['train_samples']} images ({f['val_samples']} for validation), "
                    f"{f['epochs']} epochs of {f['steps_per_epoch']} batches of {f['batch_size']} -> {f['out']}")
            if f.get("precision"):
                line += f"\n  {f['precision']} ({f.get('precision_reason')})"
                if f.get("shards", 1) > 1:
                    line += f"; each batch in {f['shards']} shards side by side ({f.get('shards_reason')})"
                if f.get("replicas", 1) > 1:
                    line += f"; {f['replicas']} replicas ({f.get('replicas_reason')})"
            if f.get("init_from"):
                line += f"\n  starting from {f['init_from']}"
        elif event == "epoch_end":
            m = f["metrics"]
            line = f"epoch {f['epoch']}/{f['epochs']} ({f['seconds']:.0f} s): " + "  ".join(
                f"{k} {v:.4g}" for k, v in m.items() if isinstance(v, (int, float)))
        elif event == "checkpoint":
            line = f"  saved best model ({f['monitor']} {f['value']:.4f}) to {f['path']}"
        elif event == "distilling":
            if f.get("cached") == "shared":
                line = (f"  teacher {f['teacher']}: its targets for the {f['samples']} training images, saved by an "
                        f"earlier run with the same teacher, data and weight ({f.get('cache')})")
            elif f.get("cached"):
                line = (f"  teacher {f['teacher']}: its targets for the {f['samples']} training images, saved by an "
                        "earlier start of this run")
            else:
                line = (f"  teacher {f['teacher']} scoring the {f['samples']} training images "
                        f"(with {f.get('tta', 'flip')} TTA)")
        elif event == "report":
            line = f"validation report: accuracy {f['accuracy']:.4f}, macro-F1 {f['macro_f1']:.4f} -> {f['path']}"
        elif event == "done":
            line = ("stopped early on request; " if f.get("interrupted") else "") + \
                   (f"epoch {f['dropped_epoch']} was not finished and is not saved (--resume repeats it); "
                    if f.get("dropped_epoch") else "") + \
                   f"best model (epoch {f.get('best_epoch')}): {f.get('best_model')}"
        elif event == "error":
            line = f"error: {f['message']}"
        else:
            return
        self.stream.write(line + "\n")
        self.stream.flush()
