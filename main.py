"""Start the FER Studio desktop application: ``python main.py [--model FILE]``.

Sets up logging, installs ``sys.excepthook`` and ``threading.excepthook`` (so an exception in a slot is
logged and shown instead of aborting the process), creates the QApplication and opens the main window.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Sequence

from app.gui.startup import add_arguments, run_gui


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="main.py", description="Start the FER Studio window.")
    add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("FER_STUDIO_LOG", "INFO").upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    return run_gui(args)


if __name__ == "__main__":
    sys.exit(main())
