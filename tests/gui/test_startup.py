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
