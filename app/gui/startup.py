"""Start the GUI: excepthooks, QApplication, MainWindow. Used by main.py and ``fer-studio gui``.

``sys.excepthook`` and ``threading.excepthook`` are installed because PyQt5 aborts the process on an
exception raised in a slot otherwise; here it is logged and shown, and the window keeps running.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import traceback
from typing import Sequence

logger = logging.getLogger(__name__)


def _report(exc_type: type[BaseException], exc: BaseException, tb: object, where: str) -> None:
    text = "".join(traceback.format_exception(exc_type, exc, tb))  # type: ignore[arg-type]
    logger.error("unhandled exception in %s:\n%s", where, text)
    try:
        from PyQt5.QtCore import QThread, QTimer
        from PyQt5.QtWidgets import QApplication

        app = QApplication.instance()
        if app is None:
            return
        from app.gui.errors import show_error

        message = f"An unexpected error occurred ({exc_type.__name__}: {exc}). The details are in the log."
        if QThread.currentThread() is app.thread():
            show_error(None, message, "Unexpected error", details=text)
        else:  # widgets only on the GUI thread
            QTimer.singleShot(0, app, lambda: show_error(None, message, "Unexpected error", details=text))
    except Exception:  # reporting must never raise
        logger.exception("could not show the error")


def install_excepthooks() -> None:
    """Log and show unhandled exceptions from slots and from Python threads instead of aborting."""
    def excepthook(exc_type: type[BaseException], exc: BaseException, tb: object) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc, tb)  # type: ignore[arg-type]
            return
        _report(exc_type, exc, tb, "the GUI")

    def thread_excepthook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        name = args.thread.name if args.thread is not None else "a thread"
        _report(args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback, f"thread {name}")

    sys.excepthook = excepthook
    threading.excepthook = thread_excepthook


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", metavar="FILE", help="model to load (.h5/.hdf5/.keras); default: the last "
                        "one used, else the bundled model")
    parser.add_argument("--source", metavar="SOURCE", help="start this source at once: a camera index, a "
                        "video file, a stream URL, or 'demo' for the bundled clip")
    parser.add_argument("--photo", metavar="PATH", help="open this photo or folder at start")
    parser.add_argument("--screenshot", metavar="PNG", help=argparse.SUPPRESS)  # docs: grab the window, quit
    parser.add_argument("--screenshot-after", type=float, default=6.0, help=argparse.SUPPRESS)


def run_gui(args: argparse.Namespace, qt_argv: Sequence[str] | None = None) -> int:
    """Create the QApplication and the main window; returns the application's exit code."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Qt's xcb GLX integration loads Mesa (and its LLVM) when the first window is shown; TensorFlow imported
    # after that segfaults on its own LLVM symbols (seen under Xvfb with llvmpipe). The app draws with
    # QPainter only, so it needs no OpenGL: keep Mesa out of the process.
    os.environ.setdefault("QT_XCB_GL_INTEGRATION", "none")
    install_excepthooks()
    from PyQt5.QtCore import QCoreApplication, QTimer
    from PyQt5.QtWidgets import QApplication

    from app.gui.settings import APPLICATION, ORGANISATION

    QCoreApplication.setOrganizationName(ORGANISATION)
    QCoreApplication.setApplicationName(APPLICATION)
    app = QApplication.instance() or QApplication(list(qt_argv or sys.argv[:1]))
    from app.core.sources import DEMO_CLIP, SourceSpec
    from app.gui.main_window import MainWindow

    window = MainWindow(model=args.model)
    window.show()
    if args.photo:
        window.open_paths([args.photo])
    elif args.source:
        spec = SourceSpec.file(DEMO_CLIP) if args.source == "demo" else SourceSpec.parse(args.source)
        window.start_source(spec)
    if args.screenshot:
        def grab() -> None:
            window.grab().save(args.screenshot)
            logger.info("screenshot saved to %s", args.screenshot)
            window.close()

        QTimer.singleShot(int(args.screenshot_after * 1000), grab)
    return int(app.exec_())
