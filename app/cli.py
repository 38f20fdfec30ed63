"""The ``fer-studio`` command line: predict | analyze | train | evaluate | preprocess | export | gui.

Each sub-command lives in ``app/commands/<name>.py`` with ``add_parser(subparsers)`` and ``run(args) -> int``.
They are imported only when chosen, so ``fer-studio predict`` does not pay for the GUI, and vice versa.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Sequence

from app import __version__
from app.core.errors import FerStudioError

COMMANDS: tuple[tuple[str, str], ...] = (
    ("predict", "label every face in photos"),
    ("analyze", "every face in every frame of video files -> CSV, summary and report"),
    ("train", "train a model on FER2013 or a folder-per-class data set"),
    ("evaluate", "score a model on a data set split"),
    ("calibrate", "fit a model's temperature on a held-out split (honest probabilities); writes a copy"),
    ("ensemble", "average several models into one plain Keras model file"),
    ("preprocess", "crop the faces of raw photos into a folder-per-class data set"),
    ("export", "re-save a model with its metadata (.h5/.keras)"),
    ("gui", "start the desktop application"),
)


#: Commands that never need TensorFlow (the window imports it in its worker thread, quietly too).
NO_TENSORFLOW: frozenset[str] = frozenset({"gui", "preprocess"})


def _quiet_tensorflow(command: str | None) -> None:
    # TF's C++ start-up lines (oneDNN notice, cuda drivers, cuInit) would bury our own output on every
    # command, and in the training dialog's log. TF_CPP_MIN_LOG_LEVEL does not reach the lines printed
    # before TF's logging starts, so TensorFlow is imported once here with those lines filtered out.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Under another Keras backend (JAX on a GPU machine) TensorFlow is not imported up front.
    if command and command not in NO_TENSORFLOW and os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow":
        from app.core.tf_quiet import import_tensorflow_quietly

        import_tensorflow_quietly()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fer-studio", description="Facial expression recognition.")
    parser.add_argument("--version", action="version", version=f"fer-studio {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS:
        try:
            module = importlib.import_module(f"app.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"app.commands.{name}":
                raise
            continue  # command not built in this checkout
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        module.add_parser(command_parser)
        command_parser.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet_tensorflow(args.command)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    module = getattr(args, "_module", None)
    if module is None:
        parser.print_help()
        return 2
    try:
        return int(module.run(args) or 0)
    except FerStudioError as exc:
        print(f"fer-studio {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"fer-studio {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
