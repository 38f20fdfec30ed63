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
from typing import Any, Sequence

logger = logging.getLogger(__name__)


class _ErrorRelay:
    """Carries an error from any thread to the GUI thread by a queued signal (the QObject is made lazily)."""

    instance: Any = None

    @classmethod
    def get(cls) -> Any:
        """The relay, living in the GUI thread; None when there is no QApplication."""
        from PyQt5.QtCore import QObject, pyqtSignal, pyqtSlot
        from PyQt5.QtWidgets import QApplication

        app = QApplication.instance()
        if app is None:
            return None
        if cls.instance is None:
            class Relay(QObject):
                error = pyqtSignal(str, str)  # message, details

                @pyqtSlot(str, str)
                def _on_error(self, message: str, details: str) -> None:
                    from app.gui.errors import show_error

                    show_error(None, message, "Unexpected error", details=details)

            relay = Relay()
            if relay.thread() is not app.thread():
                relay.moveToThread(app.thread())  # its slot must run where widgets may be touched
            relay.error.connect(relay._on_error)  # queued when emitted from another thread
            cls.instance = relay
        return cls.instance


def _report(exc_type: type[BaseException], exc: BaseException, tb: object, where: str) -> None:
    text = "".join(traceback.format_exception(exc_type, exc, tb))  # type: ignore[arg-type]
    logger.error("unhandled exception in %s:\n%s", where, text)
    try:
        relay = _ErrorRelay.get()
        if relay is not None:
            relay.error.emit(f"An unexpected error occurred ({exc_type.__name__}: {exc}). The details are "
                             "in the log.", text)
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
    _ErrorRelay.get()  # made now, in the GUI thread, when the QApplication exists already


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
    _ErrorRelay.get()  # in the GUI thread, before any worker can fail
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
