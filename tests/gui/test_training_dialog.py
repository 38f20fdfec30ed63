"""The training dialog, end to end: real ``fer-studio train`` runs on the small FER2013 sample.

Each real run pays TensorFlow's start-up in a child process (several seconds); the runs are tiny (210 training
images, mini_XCEPTION, batch 32), so each test takes well under a minute on two CPU cores.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from PyQt5.QtCore import QSettings

from app.gui.training_dialog import TrainingDialog
from app.gui.training_form import eta_text, format_duration, start_log_line

RUN_TIMEOUT_MS = 240_000  # generous: the machine may be busy with other training


@pytest.fixture
def settings(tmp_path) -> QSettings:
    return QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)


@pytest.fixture
def dialog(qtbot, settings):
    dlg = TrainingDialog(settings=settings)
    dlg.interactive = False  # no question boxes
    qtbot.addWidget(dlg)
    yield dlg
    dlg.process.shutdown(5_000)


def _configure(dlg: TrainingDialog, data: Path, out: Path, epochs: int) -> None:
    ui = dlg.ui
    ui.dataEdit.setText(str(data))
    ui.outEdit.setText(str(out))
    ui.archCombo.setCurrentText("mini_xception")
    ui.epochsSpin.setValue(epochs)
    ui.batchSpin.setValue(32)


def _load(path: str):
    from app.core.model_io import load_model

    return load_model(path)


def test_summary_chart_and_imbalance_warning(qtbot, dialog, fer_sample, tmp_path):
    dialog.ui.dataEdit.setText(str(fer_sample))
    qtbot.waitUntil(lambda: len(dialog.counts_chart.bars) == 3, timeout=20_000)
    assert set(dialog.counts_chart.bars) == {"Training", "PublicTest", "PrivateTest"}
    assert "7 classes" in dialog.ui.datasetSummaryLabel.text()
    assert not dialog.ui.valSplitSpin.isEnabled()  # FER2013 brings its own validation split
    assert dialog.ui.startButton.isEnabled()

    # A folder set with 40 happy and 5 sad images: a strong imbalance is pointed out.
    for name, n in (("happy", 40), ("sad", 5)):
        (tmp_path / "folders" / name).mkdir(parents=True)
        for i in range(n):
            (tmp_path / "folders" / name / f"{i}.png").write_bytes(b"")
    dialog.ui.dataEdit.setText(str(tmp_path / "folders"))
    qtbot.waitUntil(lambda: not dialog.ui.imbalanceLabel.isHidden(), timeout=20_000)
    assert "8.0x" in dialog.ui.imbalanceLabel.text() and dialog.ui.valSplitSpin.isEnabled()

    bad = tmp_path / "bad.csv"
    bad.write_text("emotion,pixels,Usage\n9,1 2 3,Nowhere\n")
    dialog.ui.dataEdit.setText(str(bad))
    qtbot.waitUntil(lambda: "malformed" in dialog.ui.datasetSummaryLabel.text(), timeout=20_000)
    assert not dialog.ui.startButton.isEnabled() and not dialog.counts_chart.bars


def test_real_training_draws_curves_reports_and_hands_over_the_model(qtbot, dialog, fer_sample, tmp_path):
    out = tmp_path / "run"
    _configure(dialog, fer_sample, out, epochs=2)
    with qtbot.waitSignal(dialog.trainingFinished, timeout=RUN_TIMEOUT_MS) as blocker:
        assert dialog.start()
        assert dialog.is_training() and dialog.ui.stopButton.isEnabled() and not dialog.ui.startButton.isEnabled()
    outcome = blocker.args[0]
    assert outcome.ok, dialog.ui.logEdit.toPlainText()[-3000:]
    counts = dialog.curves.point_counts()
    assert counts == {"loss": 2, "val_loss": 2, "accuracy": 2, "val_accuracy": 2}
    assert dialog.report_view.report is not None and dialog.ui.perClassTable.rowCount() == 7
    assert dialog.ui.confusionLabel.pixmap() is not None and not dialog.ui.confusionLabel.pixmap().isNull()
    assert dialog.ui.tabs.currentWidget() is dialog.ui.reportTab
    assert dialog.ui.progressBar.value() == dialog.ui.progressBar.maximum()
    assert dialog.ui.resumeButton.isEnabled()  # last checkpoint is there

    loaded = _load(dialog.best_model)
    assert loaded.spec.num_classes == 7 and Path(dialog.best_model) == out / "best.h5"
    with qtbot.waitSignal(dialog.modelReady, timeout=1_000) as handed:
        dialog.ui.useModelButton.click()
    assert handed.args == [str(out / "best.h5")]

    # The run's settings are remembered by the next dialog.
    again = TrainingDialog(settings=dialog._settings)
    qtbot.addWidget(again)
    assert again.ui.outEdit.text() == str(out) and again.ui.epochsSpin.value() == 2
    assert again.ui.batchSpin.value() == 32 and again.ui.dataEdit.text() == str(fer_sample)

    # Resume to three epochs: the two earlier epochs come back from log.csv, the third is trained.
    dialog.ui.epochsSpin.setValue(3)
    with qtbot.waitSignal(dialog.trainingFinished, timeout=RUN_TIMEOUT_MS) as resumed:
        dialog.ui.resumeButton.click()
    assert resumed.args[0].ok, dialog.ui.logEdit.toPlainText()[-3000:]
    assert dialog.curves.point_counts() == {"loss": 3, "val_loss": 3, "accuracy": 3, "val_accuracy": 3}
    assert "resuming after epoch 2" in dialog.ui.logEdit.toPlainText()


def test_stop_during_a_run_keeps_a_loadable_checkpoint(qtbot, dialog, fer_sample, tmp_path):
    _configure(dialog, fer_sample, tmp_path / "run", epochs=200)
    with qtbot.waitSignal(dialog.process.checkpointSaved, timeout=RUN_TIMEOUT_MS):
        assert dialog.start()
    with qtbot.waitSignal(dialog.trainingFinished, timeout=RUN_TIMEOUT_MS) as blocker:
        dialog.ui.stopButton.click()
        assert dialog.ui.stopButton.text().replace("&", "") == "Kill now"
    outcome = blocker.args[0]
    assert outcome.stopped and outcome.ok and outcome.done["interrupted"], outcome.describe()
    assert not outcome.killed_after_timeout
    assert "stopped" in dialog.ui.statusLabel.text()
    assert _load(dialog.best_model).spec.num_classes == 7
    assert dialog.ui.startButton.isEnabled() and not dialog.ui.stopButton.isEnabled()


def test_killed_process_is_reported_with_the_last_checkpoint(qtbot, dialog, fer_sample, tmp_path):
    _configure(dialog, fer_sample, tmp_path / "run", epochs=200)
    with qtbot.waitSignal(dialog.process.checkpointSaved, timeout=RUN_TIMEOUT_MS) as saved:
        assert dialog.start()
    with qtbot.waitSignal(dialog.trainingFinished, timeout=30_000) as blocker:
        os.kill(dialog.process.pid(), signal.SIGKILL)
    outcome = blocker.args[0]
    assert outcome.crashed and outcome.signal_name == "SIGKILL"
    status = dialog.ui.statusLabel.text()
    assert "killed" in status and "SIGKILL" in status and saved.args[0]["path"] in status
    assert "Last good checkpoint" in status and dialog.ui.epochLabel.text() == "Failed"
    assert dialog.ui.useModelButton.isEnabled() and dialog.ui.startButton.isEnabled()
    assert _load(dialog.best_model).spec.num_classes == 7


def test_closing_while_training_stops_the_run(qtbot, dialog, fer_sample, tmp_path):
    _configure(dialog, fer_sample, tmp_path / "run", epochs=200)
    dialog.show()
    with qtbot.waitSignal(dialog.process.runStarted, timeout=RUN_TIMEOUT_MS):
        assert dialog.start()
    with qtbot.waitSignal(dialog.trainingFinished, timeout=RUN_TIMEOUT_MS) as blocker:
        dialog.close()  # interactive=False answers "stop training"
        assert not dialog.isVisible()
    assert blocker.args[0].stopped


def test_a_folder_holding_a_run_gets_a_fresh_sibling(dialog, fer_sample, tmp_path, monkeypatch):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "best.h5").write_bytes(b"earlier run")
    (tmp_path / "run-2").mkdir()
    (tmp_path / "run-2" / "last.keras").write_bytes(b"another one")
    started = []
    monkeypatch.setattr(dialog.process, "start", lambda config: started.append(config) or ["fake"])
    _configure(dialog, fer_sample, tmp_path / "run", epochs=1)
    assert dialog.ui.resumeButton.isEnabled() is False  # best.h5 alone cannot be resumed
    assert dialog.start()
    assert started[0].out == str(tmp_path / "run-3") == dialog.ui.outEdit.text()


def test_start_from_a_model_is_passed_on_and_remembered(dialog, fer_sample, tmp_path, monkeypatch, settings):
    started = []
    monkeypatch.setattr(dialog.process, "start", lambda config: started.append(config) or ["fake"])
    _configure(dialog, fer_sample, tmp_path / "run", epochs=1)
    dialog.ui.initEdit.setText(str(tmp_path / "missing.h5"))
    assert not dialog.start() and "does not exist" in dialog.ui.statusLabel.text()
    bundled = Path(__file__).resolve().parents[2] / "models" / "fer_mini_xception.h5"
    dialog.ui.initEdit.setText(str(bundled))
    assert dialog.start()
    assert started[0].init_from == str(bundled) and "--init-from" in started[0].to_args()
    again = TrainingDialog(settings=settings)  # the form comes back as it was left
    assert again.ui.initEdit.text() == str(bundled)
    again.deleteLater()


def test_browsing_a_start_model_sets_its_architecture_width_and_crop(dialog, monkeypatch):
    models = Path(__file__).resolve().parents[2] / "models"
    ui = dialog.ui
    for name, arch, width, crop in (("fer_live_vgg32.h5", "vgg", 32, 44), ("fer_mini_xception.h5", "mini_xception",
                                                                          None, 0)):
        monkeypatch.setattr("app.gui.training_dialog.QFileDialog.getOpenFileName",
                            lambda *a, n=name, **k: (str(models / n), ""))
        dialog._on_initButton_clicked()
        assert ui.initEdit.text() == str(models / name) and ui.archCombo.currentText() == arch
        assert ui.cropSpin.value() == crop and "the model's own" in ui.statusLabel.text()
        if width:
            assert ui.widthSpin.isEnabled() and ui.widthSpin.value() == width
        else:
            assert not ui.widthSpin.isEnabled()
    # A model that does not say how it was trained (the photo ensemble) leaves the fields as they were.
    monkeypatch.setattr("app.gui.training_dialog.QFileDialog.getOpenFileName",
                        lambda *a, **k: (str(models / "fer_photo_ensemble.h5"), ""))
    ui.statusLabel.setText("")
    dialog._on_initButton_clicked()
    assert ui.archCombo.currentText() == "mini_xception" and ui.statusLabel.text() == ""


def test_recipe_fields_are_passed_on_and_remembered(dialog, fer_sample, tmp_path, monkeypatch, settings):
    started = []
    monkeypatch.setattr(dialog.process, "start", lambda config: started.append(config) or ["fake"])
    _configure(dialog, fer_sample, tmp_path / "run", epochs=1)
    ui = dialog.ui
    assert not ui.widthSpin.isEnabled() and "takes none" in ui.widthSpin.specialValueText()  # mini_xception
    assert not ui.dropoutSpin.isEnabled() and dialog.config().dropout_scale is None  # it has no dropout
    ui.archCombo.setCurrentText("vgg")
    assert ui.widthSpin.isEnabled() and ui.widthSpin.specialValueText() == "architecture's own (64)"
    assert ui.dropoutSpin.isEnabled() and ui.dropoutSpin.value() == 1.0 and dialog.config().dropout_scale is None
    ui.widthSpin.setValue(32)
    ui.cropSpin.setValue(44)
    ui.dropoutSpin.setValue(0.0)
    ui.optimizerCombo.setCurrentText("sgd")
    ui.weightDecaySpin.setValue(0.005)
    ui.precisionCombo.setCurrentText("bfloat16")
    assert dialog.start()
    args = started[0].to_args()
    for flag, value in (("--width", "32"), ("--crop", "44"), ("--weight-decay", "0.005"),
                        ("--precision", "bfloat16"), ("--optimizer", "sgd"), ("--dropout-scale", "0.0")):
        assert args[args.index(flag) + 1] == value
    again = TrainingDialog(settings=settings)  # the form comes back as it was left
    assert (again.ui.archCombo.currentText(), again.ui.widthSpin.value(), again.ui.cropSpin.value(),
            again.ui.dropoutSpin.value(), again.ui.weightDecaySpin.value(),
            again.ui.precisionCombo.currentText()) == ("vgg", 32, 44, 0.0, 0.005, "bfloat16")
    assert "--dropout-scale" not in again.config(resume="").to_args()  # a resumed run keeps its own layers
    again.ui.archCombo.setCurrentText("mini_xception")  # a width or dropout the architecture cannot take is not sent
    assert again.config().width is None and again.config().crop == 44 and again.config().dropout_scale is None
    assert "--dropout-scale" not in again.config().to_args()
    again.deleteLater()


def test_format_duration_and_eta():
    assert format_duration(5) == "0:05" and format_duration(75) == "1:15" and format_duration(3725) == "1:02:05"
    # 10 s for 25 of 100 steps of epoch 2 of 4; earlier epochs took 50 s: 30 s left here, then 2 x 50 s.
    assert eta_text(10.0, 2, 25, 100, 4, [50.0]) == "epoch 0:30 left · run ~2:10"


def test_the_start_line_says_how_a_batch_is_split():
    event = {"arch": "mini_xception", "train_samples": 100, "val_samples": 20, "labels": list("abcdefg"),
             "batch_size": 64, "steps_per_epoch": 2, "out": "run", "shards": 2, "replicas": 1}
    assert "batch 64 in 2 shards side by side, 2 steps per epoch" in start_log_line(event)
    assert "batch 64, 2 steps" in start_log_line({**event, "shards": 1})
    assert "batch 64 over 4 replicas, 2 steps" in start_log_line({**event, "shards": 1, "replicas": 4})


def test_resume_is_offered_only_for_what_the_engine_writes(tmp_path):
    from app.gui.training_form import can_resume, holds_run

    (tmp_path / "last.h5").write_bytes(b"a stray file the engine never writes")
    assert not can_resume(tmp_path)  # --resume would fail on it: not offered
    (tmp_path / "last.keras").write_bytes(b"checkpoint")
    assert can_resume(tmp_path) and holds_run(tmp_path)
