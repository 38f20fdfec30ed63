"""The training engine's process protocol, Qt-free: settings -> command line, stdout bytes -> events,
exit status -> a message for the user.

``fer-studio train ... --events jsonl`` prints one JSON object per line on stdout (start, batch, epoch_end,
checkpoint, report, done, error) and its log on stderr. :class:`JsonLinesParser` cuts stdout into lines however
the pipe delivers them (half lines, several lines at once, stray non-JSON output);
:class:`~app.workers.training_process.TrainingProcess` runs the command and emits Qt signals.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

#: How the imbalance choice of the form maps to the engine's flags.
IMBALANCE_FLAGS: dict[str, str | None] = {
    "none": None,
    "class_weights": "--class-weights",
    "oversample": "--oversample",
    "focal_loss": "--focal-loss",
}

ParsedLine = dict | str


@dataclass
class TrainingConfig:
    """Everything the dialog lets the user choose for one ``fer-studio train`` run."""

    data: str
    out: str
    arch: str = "mini_xception"
    width: int | None = None  # filters of the first block (vgg); None: the architecture's own
    crop: int | None = None  # random crop x crop training windows; None: the whole face
    dropout_scale: float | None = None  # multiplies vgg's / simple_cnn's dropout rates; None: their own (fresh runs)
    epochs: int = 50
    batch_size: int = 64
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0  # decoupled; 0: off (on --resume: the run's own)
    precision: str = "auto"  # "auto", "float32" or "bfloat16" (on --resume, "auto": the run's own)
    augment: bool = True
    mixup: bool = False
    imbalance: str = "none"  # a key of IMBALANCE_FLAGS
    label_smoothing: float = 0.0
    val_split: float | None = None  # folder-per-class data only
    max_samples: int | None = None
    #: None: a fresh run; "": resume from the output folder's last checkpoint; a path: resume from that file.
    resume: str | None = None
    #: A model whose weights a fresh run starts from (fine-tuning); ignored when resuming.
    init_from: str | None = None

    def to_args(self) -> list[str]:
        """The ``train`` sub-command's arguments (without the program), paths made absolute."""
        if self.imbalance not in IMBALANCE_FLAGS:
            raise ValueError(f"unknown imbalance handling {self.imbalance!r}; one of {sorted(IMBALANCE_FLAGS)}")
        args = [
            "train", str(Path(self.data).expanduser().resolve()),
            "--out", str(Path(self.out).expanduser().resolve()),
            "--arch", self.arch,
            "--epochs", str(int(self.epochs)),
            "--batch-size", str(int(self.batch_size)),
            "--lr", repr(float(self.learning_rate)),
            "--optimizer", self.optimizer,
        ]
        if self.width:
            args += ["--width", str(int(self.width))]
        if self.crop:
            args += ["--crop", str(int(self.crop))]
        if self.dropout_scale is not None and self.resume is None:  # a resumed run keeps its own layers
            args += ["--dropout-scale", repr(float(self.dropout_scale))]
        if self.weight_decay > 0:
            args += ["--weight-decay", repr(float(self.weight_decay))]
        if self.precision != "auto":
            args += ["--precision", self.precision]
        if not self.augment:
            args.append("--no-augment")
        if self.mixup:
            args.append("--mixup")
        flag = IMBALANCE_FLAGS[self.imbalance]
        if flag:
            args.append(flag)
        if self.label_smoothing > 0:
            args += ["--label-smoothing", repr(float(self.label_smoothing))]
        if self.val_split is not None:
            args += ["--val-split", repr(float(self.val_split))]
        if self.max_samples:
            args += ["--max-samples", str(int(self.max_samples))]
        if self.resume is not None:
            args.append("--resume")
            if self.resume:
                args.append(str(Path(self.resume).expanduser().resolve()))
        elif self.init_from:
            args += ["--init-from", str(Path(self.init_from).expanduser().resolve())]
        args += ["--events", "jsonl"]
        return args


def build_command(config: TrainingConfig, python: str | None = None) -> list[str]:
    """The full command line: ``[python, "-m", "app.cli", "train", ..., "--events", "jsonl"]``."""
    return [python or sys.executable, "-m", "app.cli", *config.to_args()]


class JsonLinesParser:
    """Cuts a byte stream into lines and parses each as a JSON event.

    ``feed`` returns, in order, a ``dict`` for each line that is a JSON object with a string ``"event"`` key,
    and a ``str`` for any other non-blank line (noise for the log). An unfinished last line is kept until the
    next ``feed`` or ``flush``. A line longer than ``max_line_bytes`` without a newline is given up as noise,
    so a child that never writes a newline cannot make the buffer grow without bound.
    """

    def __init__(self, max_line_bytes: int = 1 << 20) -> None:
        self._buffer = bytearray()
        self._max = max_line_bytes

    def feed(self, data: bytes) -> list[ParsedLine]:
        """Add bytes; return the events and noise lines completed by them."""
        self._buffer += data
        *lines, rest = bytes(self._buffer).split(b"\n")
        self._buffer = bytearray(rest)
        if len(self._buffer) > self._max:
            lines.append(bytes(self._buffer))
            self._buffer.clear()
        return [item for item in map(self.parse_line, lines) if item is not None]

    def flush(self) -> list[ParsedLine]:
        """Parse what is left (the stream ended without a final newline)."""
        rest, self._buffer = bytes(self._buffer), bytearray()
        item = self.parse_line(rest)
        return [] if item is None else [item]

    @staticmethod
    def parse_line(raw: bytes) -> ParsedLine | None:
        """One line -> event dict, noise text, or None for a blank line."""
        text = raw.decode("utf-8", errors="replace").strip()
        if not text:
            return None
        if text.startswith("{"):
            try:
                value = json.loads(text)  # accepts NaN/Infinity, which a diverging loss produces
            except ValueError:
                return text
            if isinstance(value, dict) and isinstance(value.get("event"), str):
                return value
        return text


class TextLineBuffer:
    """Cuts stderr into lines; a carriage return (a console progress bar redrawing itself) also ends one."""

    def __init__(self) -> None:
        self._rest = ""

    def feed(self, data: bytes) -> list[str]:
        text = self._rest + data.decode("utf-8", errors="replace")
        *lines, self._rest = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        return [line.rstrip() for line in lines if line.strip()]

    def flush(self) -> list[str]:
        rest, self._rest = self._rest.strip(), ""
        return [rest] if rest else []


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


@dataclass(frozen=True)
class TrainingOutcome:
    """How a training process ended, with what the dialog needs to tell the user."""

    exit_code: int
    crashed: bool  # ended by a signal (killed, segfault, out-of-memory killer)
    stopped: bool  # the user asked it to stop
    killed_after_timeout: bool  # it did not stop in time and was killed
    done: dict | None  # the "done" event, if one came
    error: str | None  # the "error" event's message, or why the process could not start
    last_checkpoint: str | None  # the newest good checkpoint file, if any exists
    stderr_tail: tuple[str, ...] = field(default_factory=tuple)

    @property
    def signal_name(self) -> str | None:
        return _signal_name(self.exit_code) if self.crashed else None

    @property
    def ok(self) -> bool:
        """True when the run ended cleanly (finished, or stopped at the user's request) with a done event."""
        if self.crashed or self.error is not None or self.done is None:
            return False
        # A stopped run may exit with 130 (interrupted) after its done event; that is still a clean end.
        return self.exit_code == 0 or bool(self.done.get("interrupted"))

    def describe(self) -> str:
        """A message for the user: what happened and where the last good checkpoint is."""
        if self.ok:
            assert self.done is not None
            best = self.done.get("best_model") or self.last_checkpoint
            epoch = self.done.get("best_epoch")
            head = "Training stopped; the best checkpoint was kept" if self.done.get("interrupted") \
                else "Training finished"
            where = f": {best}" + (f" (epoch {epoch})" if epoch else "") if best else " (no checkpoint saved)"
            dropped = self.done.get("dropped_epoch")
            tail = f" Epoch {dropped} was not finished and is not saved; Resume repeats it." if dropped else ""
            return head + where + "." + tail
        if self.error:
            head = f"Training failed: {self.error}"
        elif self.crashed:
            name = self.signal_name
            if self.stopped and self.exit_code == signal.SIGTERM and not self.killed_after_timeout:
                head = "Training stopped (it ended on Stop outside an epoch)"  # before/after the engine's handler
            elif self.killed_after_timeout:
                head = "The training process did not stop in time and was killed"
            elif self.exit_code == signal.SIGKILL:
                head = f"The training process was killed ({name}; out of memory, or killed from outside)"
            else:
                head = f"The training process crashed ({name})"
        else:
            head = f"The training process exited with code {self.exit_code}"
            if self.done is None:
                head += " before finishing"
        # The child's last words help with a crash or a failed exit (a "double free", a traceback's last
        # line), not with an outside kill or an error the engine already put into words.
        if not self.error and not (self.crashed and self.exit_code in (signal.SIGKILL, signal.SIGTERM)):
            tail = "\n".join(line[:200] for line in self.stderr_tail[-3:])
            if tail:
                head += f"\nLast output:\n{tail}"
        if self.last_checkpoint:
            return f"{head}\nLast good checkpoint: {self.last_checkpoint}"
        return f"{head}\nNo checkpoint was saved."
