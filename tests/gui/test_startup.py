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


STARTUP_SCRIPT = r'''
import builtins, json, sys, threading
imports = []
real_import = builtins.__import__

def spy(name, *args, **kwargs):
    if name in ("dlib", "face_recognition") and name not in sys.modules:
        imports.append((name, threading.current_thread() is threading.main_thread()))
    return real_import(name, *args, **kwargs)

builtins.__import__ = spy
from PyQt5.QtCore import QSettings
from PyQt5.QtWidgets import QApplication
app = QApplication([])
from app.gui.main_window import MainWindow
window = MainWindow(settings=QSettings(sys.argv[1], QSettings.IniFormat), probe_cameras=False)
at_start = list(imports) + [m for m in ("dlib", "face_recognition") if m in sys.modules]
done = []
window.worker.photo_ready.connect(lambda packet: (done.append(len(packet.faces)), app.quit()))
window.open_photo(sys.argv[2])
app.exec_()
window.close()
print(json.dumps({"at_start": at_start, "all": imports, "faces": done}))
'''


def test_dlib_is_imported_by_the_worker_not_at_startup(tmp_path, data_dir):
    """Importing dlib and its models takes seconds: never on the GUI thread while the window starts."""
    import json
    import os
    import subprocess

    script = tmp_path / "start.py"
    script.write_text(STARTUP_SCRIPT)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", FER_STUDIO_NO_DIALOGS="1")
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "s.ini"), str(data_dir / "justin.jpg")],
                          cwd=str(data_dir.parents[1]), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["at_start"] == []  # the window built without touching dlib
    assert result["faces"] == [1]  # the default (HOG) detector ran, in the worker
    assert result["all"] and not any(on_gui_thread for _, on_gui_thread in result["all"])
