"""The "Analyze video file…" dialog: a real ``fer-studio analyze`` child, progress, Cancel, charts, frames.

Each test starts the real command in a child process (TensorFlow loads there, so each takes 10-30 s on
two busy cores); the GUI thread only reads its JSON lines.
"""

from __future__ import annotations

from PyQt5.QtCore import QPointF, Qt
from PyQt5.QtWidgets import QMainWindow, QMenu

from app.gui.analysis_dialog import AnalysisDialog
from app.gui.analysis_launcher import AnalysisLauncher
from app.gui.settings import AppSettings
from app.workers.analysis_process import AnalysisRequest

TIMEOUT_MS = 240_000


def finished(qtbot, dialog: AnalysisDialog):
    with qtbot.waitSignal(dialog.process.finished, timeout=TIMEOUT_MS) as blocker:
        pass
    return blocker.args[0]


def test_analysis_ends_with_charts_and_a_click_shows_the_frame(qtbot, data_dir, tmp_path):
    request = AnalysisRequest(video=str(data_dir / "people_clip.mp4"), out=str(tmp_path), every=2)
    dialog = AnalysisDialog(request)
    qtbot.addWidget(dialog)
    progress = []
    dialog.process.progress.connect(progress.append)
    outcome = finished(qtbot, dialog)
    assert outcome.ok and outcome.result["status"] == "done", outcome
    assert progress and progress[-1]["total"] == 85
    assert dialog.ui.openReportButton.isEnabled()
    people = dialog.summary["people"]
    assert len(dialog.charts) == len(people) >= 4
    assert "Done" in dialog.ui.statusLabel.text()

    # Click on the first person's timeline, in its middle: the nearest analysed frame is shown.
    chart = dialog.charts[0]
    dialog.show()
    qtbot.waitExposed(dialog)
    middle = float(chart.times[len(chart.times) // 2])
    chart.timeline.grab()  # paint once: pyqtgraph settles the view's geometry before painting, as on screen
    with qtbot.waitSignal(chart.frameRequested, timeout=5_000) as shown:
        view_box = chart.timeline.getPlotItem().vb
        scene_pos = view_box.mapViewToScene(QPointF(middle, 0.5))
        widget_pos = chart.timeline.mapFromScene(scene_pos)
        # Press and release as separate events: pyqtgraph's scene turns the pair into its click event.
        qtbot.mousePress(chart.timeline.viewport(), Qt.LeftButton, pos=widget_pos)
        qtbot.mouseRelease(chart.timeline.viewport(), Qt.LeftButton, pos=widget_pos, delay=50)
    frame, time_s, person = shown.args
    assert person == chart.person and frame % 2 == 0 and abs(time_s - middle) < 0.5
    assert dialog.ui.frameLabel.pixmap() is not None and not dialog.ui.frameLabel.pixmap().isNull()
    assert f"#{person}" in dialog.ui.frameCaption.text()
    # The frame drawn is the video's frame with that person's box on it.
    drawn = dialog.show_frame(frame, time_s, person)
    assert drawn is not None and drawn.shape == (480, 640, 3)
    assert any(f.track_id == person for f in dialog.faces_at(frame))


def test_cancel_keeps_what_was_done(qtbot, data_dir, tmp_path):
    request = AnalysisRequest(video=str(data_dir / "people_clip.mp4"), out=str(tmp_path))
    dialog = AnalysisDialog(request)
    qtbot.addWidget(dialog)
    with qtbot.waitSignal(dialog.process.progress, timeout=TIMEOUT_MS):
        pass
    dialog.ui.cancelButton.click()
    assert "Stopping" in dialog.ui.statusLabel.text()
    outcome = finished(qtbot, dialog)
    assert outcome.cancelled and outcome.exit_code == 130
    assert outcome.result["status"] == "interrupted"
    assert "Stopped" in dialog.ui.statusLabel.text()
    assert dialog.summary["frames_analysed"] < 85


def test_a_bad_video_is_a_clear_message_not_a_crash(qtbot, tmp_path):
    bad = tmp_path / "holiday.mp4"
    bad.write_text("this is not a video\n" * 20)
    dialog = AnalysisDialog(AnalysisRequest(video=str(bad), out=str(tmp_path / "out")))
    qtbot.addWidget(dialog)
    outcome = finished(qtbot, dialog)
    assert not outcome.ok and "not a video" in outcome.error
    assert "not a video" in dialog.ui.statusLabel.text()
    assert dialog.charts == [] and not dialog.ui.openReportButton.isEnabled()


def test_launcher_adds_the_action_and_passes_the_window_options(qtbot, qsettings, tmp_path, monkeypatch):
    started = []
    monkeypatch.setattr("app.gui.analysis_launcher.AnalysisDialog",
                        lambda request, parent: started.append(request) or _FakeDialog())
    window = QMainWindow()
    qtbot.addWidget(window)
    menu = QMenu("File", window)
    settings = AppSettings(qsettings)
    settings.set("analysis/out", str(tmp_path / "results"))
    launcher = AnalysisLauncher(window, settings, menu, model=lambda: "/models/m.h5",
                                options=lambda: {"detector": "haar", "tta": "own", "video_size": 320,
                                                 "min_face_size": 40, "min_score": 0.5, "align": False,
                                                 "uncertain_below": 0.3})
    assert launcher.action in menu.actions() and launcher.action.text() == "Analyze video file…"
    launcher.analyze("/videos/a.mp4")
    assert started == [AnalysisRequest(video="/videos/a.mp4", out=str(tmp_path / "results"),
                                       model="/models/m.h5", detector="haar", tta="own", detect_size=320,
                                       min_face_size=40, min_score=0.5, uncertain_below=0.3)]
    args = started[0].to_args()
    assert args[:5] == ["analyze", "/videos/a.mp4", "--out", str(tmp_path / "results"), "--events"]
    assert " ".join(args).endswith("--model /models/m.h5 --detector haar --tta own --detect-size 320 "
                                   "--min-face-size 40 --min-score 0.5 --uncertain-below 0.3")
    # The arguments are the command's own: its parser accepts them.
    from app.cli import build_parser

    parsed = build_parser().parse_args(args)
    assert parsed.detect_size == 320 and parsed.min_face_size == 40 and parsed.tta == "own"
    # The older yes/no form still means flip; none adds nothing.
    assert AnalysisRequest(video="v", out="o", tta=True).to_args()[-2:] == ["--tta", "flip"]
    assert "--tta" not in AnalysisRequest(video="v", out="o", tta="none").to_args()
    assert parsed.uncertain_below == 0.3


class _FakeProcess:
    def __init__(self) -> None:
        self.shut_down = False

    def shutdown(self) -> None:
        self.shut_down = True


class _FakeDialog:
    def __init__(self) -> None:
        self.process = _FakeProcess()

    def show(self) -> None:
        pass

    def isVisible(self) -> bool:
        return True


def test_progress_text_and_a_child_that_cannot_start(qtbot, tmp_path):
    dialog = AnalysisDialog(AnalysisRequest(video="x.mp4", out=str(tmp_path)), python="/nonexistent/python")
    qtbot.addWidget(dialog)
    dialog._on_process_progress({"total": 100, "frames_read": 25, "fps": 25.0, "eta_s": 3.0, "people": 2})
    assert dialog.ui.progressBar.value() == 25
    assert dialog.ui.statusLabel.text() == "25 / 100 frames, 25.0 frames/s, ETA 0:03, 2 people so far"
    outcome = finished(qtbot, dialog) if dialog.outcome is None else dialog.outcome
    assert not outcome.ok and "could not start" in outcome.error


def test_main_window_has_the_action_with_its_own_options(qtbot, qsettings, tmp_path, monkeypatch):
    from app.gui.main_window import MainWindow

    started = []
    monkeypatch.setattr("app.gui.analysis_launcher.AnalysisDialog",
                        lambda request, parent: started.append(request) or _FakeDialog())
    window = MainWindow(settings=qsettings, probe_cameras=False)
    qtbot.addWidget(window)
    actions = window.menu_file.actions()
    assert window.analysis.action in actions
    assert actions.index(window.analysis.action) == actions.index(window.action_snapshot) - 1
    window.analysis.analyze(str(tmp_path / "v.mp4"), out=str(tmp_path / "out"))
    options = window.options.worker_options()
    assert started[0].detector == options["detector"] and started[0].detect_size == options["video_size"]
    window.close()
    assert window.worker.isFinished() and window.analysis.dialogs[0].process.shut_down
