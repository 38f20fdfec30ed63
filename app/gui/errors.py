"""One helper for errors a user should see: a dialog in the GUI, a log line only under tests.

Dialogs are non-modal (``show()``, not ``exec_()``), so an error never starts a nested event loop in the
middle of a slot and live video keeps running behind it. The same message is not stacked twice.
"""

from __future__ import annotations

import logging
import os

from PyQt5.QtCore import Qt
from PyQt5.QtWidgets import QApplication, QMessageBox, QWidget

logger = logging.getLogger(__name__)

_open_messages: set[str] = set()


def dialogs_enabled() -> bool:
    """False under pytest (or with FER_STUDIO_NO_DIALOGS=1), where a dialog would block a headless run."""
    if os.environ.get("FER_STUDIO_NO_DIALOGS") == "1" or "PYTEST_CURRENT_TEST" in os.environ:
        return False
    app = QApplication.instance()
    return app is not None and app.property("fer_studio_no_dialogs") is not True


def show_error(parent: QWidget | None, message: str, title: str = "FER Studio", *,
               details: str | None = None) -> None:
    """Log ``message`` and, in the GUI, show it in a non-modal warning box."""
    logger.error("%s: %s", title, message)
    if details:
        logger.debug("%s", details)
    if not dialogs_enabled() or message in _open_messages:
        return
    box = QMessageBox(QMessageBox.Warning, title, message, QMessageBox.Ok, parent)
    box.setAttribute(Qt.WA_DeleteOnClose)
    box.setWindowModality(Qt.NonModal)
    if details:
        box.setDetailedText(details)
    _open_messages.add(message)
    box.finished.connect(lambda _result: _open_messages.discard(message))
    box.show()
