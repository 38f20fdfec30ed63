"""Start-up: the excepthooks log (and would show) errors instead of aborting; the gui command's arguments."""

from __future__ import annotations

import argparse
import logging
import sys
import threading

from app.gui import startup


def test_excepthooks_log_instead_of_aborting(qapp, caplog, monkeypatch):
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    startup.install_excepthooks()
    with caplog.at_level(logging.ERROR):
        try:
            raise ValueError("boom in a slot")
        except ValueError:
            sys.excepthook(*sys.exc_info())
        thread = threading.Thread(target=lambda: 1 / 0, name="worker-x")
        thread.start()
        thread.join()
    text = caplog.text
    assert "boom in a slot" in text and "ZeroDivisionError" in text and "worker-x" in text


def test_gui_command_arguments():
    from app.commands import gui

    parser = argparse.ArgumentParser()
    gui.add_parser(parser)
    args = parser.parse_args(["--model", "m.h5", "--source", "demo"])
    assert args.model == "m.h5" and args.source == "demo" and args.photo is None


def test_error_in_a_thread_reaches_the_gui_thread(qapp, qtbot, monkeypatch):
    """An exception in a background thread is shown by the GUI thread (it was only logged before)."""
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    shown = []

    def record(parent, message, title="FER Studio", *, details=None):
        shown.append((message, threading.current_thread() is threading.main_thread()))

    monkeypatch.setattr("app.gui.errors.show_error", record)
    startup.install_excepthooks()
    thread = threading.Thread(target=lambda: 1 / 0, name="worker-y")
    thread.start()
    thread.join()
    qtbot.waitUntil(lambda: bool(shown), timeout=5000)
    message, on_gui_thread = shown[0]
    assert "ZeroDivisionError" in message and on_gui_thread
