"""``fer-studio gui [--model FILE]``: start the desktop application (the same window as ``python main.py``)."""

from __future__ import annotations

import argparse
import logging
import sys


def add_parser(parser: argparse.ArgumentParser) -> None:
    from app.gui.startup import add_arguments

    add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    # The CLI sets WARNING by default; the GUI logs its own progress at INFO unless -v asked for more.
    root = logging.getLogger()
    root.setLevel(min(root.level, logging.INFO))
    from app.gui.startup import run_gui

    return run_gui(args, sys.argv[:1])
