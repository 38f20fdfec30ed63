"""The main window, offscreen: photos drawn with their faces, model picker, live video, settings, output."""

from __future__ import annotations

import csv

import pytest
from PyQt5.QtCore import QPoint, Qt
from PyQt5.QtGui import QColor

from app.core.labels import FER2013_LABELS, colour_for
from app.core.recognition.annotate import UNCERTAIN_BGR
from app.core.sources import SourceSpec
from app.gui.main_window import NO_MODEL_TEXT, MainWindow


@pytest.fixture
def make_window(qtbot, qsettings):
    windows = []

    def make(model=None, settings=qsettings):
        window = MainWindow(model=str(model) if model else None, settings=settings, probe_cameras=False)
        qtbot.addWidget(window)
        window.resize(1200, 800)
        window.show()
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.close()
        assert window.worker.isFinished()


def load(qtbot, window, path):
    with qtbot.waitSignal(window.worker.model_loaded, timeout=60000):
        window.use_model(str(path))


def open_photo(qtbot, window, path):
    with qtbot.waitSignal(window.worker.photo_ready, timeout=30000):
        window.open_photo(path)
    qtbot.waitUntil(lambda: bool(window.view.faces or window.view.message), timeout=5000)


def test_opening_a_photo_draws_its_faces(qtbot, make_window, tiny_model_path, data_dir):
    window = make_window(tiny_model_path)
    qtbot.waitUntil(lambda: window.model_info is not None, timeout=60000)
    open_photo(qtbot, window, data_dir / "two_people.jpg")
    faces = window.view.faces
    assert len(faces) == 2 and all(f.label in FER2013_LABELS for f in faces)
    # The largest face is selected by default and its probabilities are in the bars.
    largest = max(faces, key=lambda f: f.box[2] * f.box[3])
    assert window.bars.values == pytest.approx([largest.probabilities[k] for k in FER2013_LABELS])
    # Each box is painted on screen in its label's colour.
    shot = window.view.grab().toImage()
    for face in faces:
        x, y, w, h = face.box
        point = window.view.widget_point(x + w / 2, y + h)  # the middle of the bottom edge
        # The label's colour; grey when the (untrained) model is unsure of the face.
        expected = QColor(*reversed(UNCERTAIN_BGR)) if face.uncertain else QColor(*colour_for(face.label))
        found = [QColor(shot.pixel(int(point.x()), int(point.y()) + dy)) for dy in range(-2, 3)]
        assert any(abs(c.red() - expected.red()) + abs(c.green() - expected.green())
                   + abs(c.blue() - expected.blue()) < 40 for c in found), face


def test_no_model_still_opens_photos_with_unlabelled_boxes(qtbot, make_window, data_dir, monkeypatch):
    monkeypatch.setattr("app.gui.model_picker.default_model_path", lambda: None)
    window = make_window()
    assert window.model_info_label.text() == NO_MODEL_TEXT and "No model loaded" in NO_MODEL_TEXT
    open_photo(qtbot, window, data_dir / "justin.jpg")
    assert len(window.view.faces) == 1 and window.view.faces[0].label == ""
    assert "no model" in window.selected_face_label.text()


def test_click_selects_a_face(qtbot, make_window, tiny_model_path, data_dir):
    window = make_window(tiny_model_path)
    qtbot.waitUntil(lambda: window.model_info is not None, timeout=60000)
    open_photo(qtbot, window, data_dir / "two_people.jpg")
    smallest = min(window.view.faces, key=lambda f: f.box[2] * f.box[3])
    x, y, w, h = smallest.box
    point = window.view.widget_point(x + w / 2, y + h / 2)
    qtbot.mouseClick(window.view, Qt.LeftButton, pos=QPoint(int(point.x()), int(point.y())))
    assert window.view.selected == window.view.faces.index(smallest)
    assert window.bars.values == pytest.approx([smallest.probabilities[k] for k in FER2013_LABELS])


def test_folder_opens_a_browsable_batch(qtbot, make_window, data_dir, tmp_path):
    for name in ("justin.jpg", "two_people.jpg"):
        (tmp_path / name).write_bytes((data_dir / name).read_bytes())
    (tmp_path / "notes.txt").write_text("not a photo")
    window = make_window()
    with qtbot.waitSignal(window.worker.photo_ready, timeout=30000):
        window.open_paths([tmp_path])
    assert window.batch_bar.isVisible() and window.batch_label.text().startswith("1 / 2")
    with qtbot.waitSignal(window.worker.photo_ready, timeout=30000) as second:
        window.next_button.click()
    assert second.args[0].photo_path.endswith("two_people.jpg") and len(second.args[0].faces) == 2


def test_live_video_model_switch_and_bad_model(qtbot, make_window, tiny_model_path, clip_path, tmp_path):
    window = make_window(tiny_model_path)
    qtbot.waitUntil(lambda: window.model_info is not None, timeout=60000)
    window.start_source(SourceSpec.file(clip_path))
    qtbot.waitUntil(lambda: window.frames_shown >= 3 and bool(window.view.faces), timeout=30000)
    assert window.view.faces[0].track_id is not None and window.timeline.track_ids
    assert "fps" in window.perf_label.text() and "detect" in window.perf_label.text()
    bad = tmp_path / "bad.h5"
    bad.write_text("not a model")
    with qtbot.waitSignal(window.worker.model_failed, timeout=30000):
        window.use_model(str(bad))  # what the training dialog's "Use this model" calls
    assert "Could not load bad.h5" in window.model_info_label.text()
    assert window.model_info.path == str(tiny_model_path)
    shown = window.frames_shown
    qtbot.waitUntil(lambda: window.frames_shown > shown + 2, timeout=30000)
    window.close()  # waits for the worker: closing never leaves a thread or a camera open
    assert window.worker.isFinished()


def test_stop_button_and_source_error(qtbot, make_window, clip_path, tmp_path):
    window = make_window()
    window.start_source(SourceSpec.file(clip_path))
    qtbot.waitUntil(lambda: window.frames_shown >= 1, timeout=30000)
    assert window.stop_button.isEnabled() and not window.start_button.isEnabled()
    with qtbot.waitSignal(window.worker.source_stopped, timeout=3000):
        window.stop_button.click()
    assert window.start_button.isEnabled() and not window.stop_button.isEnabled()
    with qtbot.waitSignal(window.worker.source_stopped, timeout=5000):
        window.start_source(SourceSpec.file(tmp_path / "gone.mp4"))
    assert "cannot open video file" in window.view.message


def test_snapshot_and_recording(qtbot, make_window, tiny_model_path, clip_path, tmp_path):
    window = make_window(tiny_model_path)
    qtbot.waitUntil(lambda: window.model_info is not None, timeout=60000)
    window.start_source(SourceSpec.file(clip_path))
    qtbot.waitUntil(lambda: window.frames_shown >= 2 and bool(window.view.faces), timeout=30000)
    snap = window.save_snapshot(tmp_path / "snap.png")
    assert snap is not None and snap.stat().st_size > 10_000
    csv_path, video_path = tmp_path / "rec.csv", tmp_path / "rec.mp4"
    window.start_recording(csv_path, video_path)
    assert window.record_button.isChecked()

    def rows():
        return list(csv.DictReader(csv_path.open())) if csv_path.is_file() else []

    qtbot.waitUntil(lambda: len(rows()) >= 3, timeout=30000)  # flushed as it goes: readable while recording
    window.record_button.setChecked(False)
    qtbot.waitUntil(lambda: video_path.is_file() and video_path.stat().st_size > 0, timeout=5000)
    assert {"time_s", "frame", "track_id", "x", "y", "w", "h", "label", "p_happy"} <= set(rows()[0])


def test_settings_are_remembered(qtbot, make_window, qsettings, tiny_model_path):
    window = make_window(tiny_model_path)
    qtbot.waitUntil(lambda: window.model_info is not None, timeout=60000)
    window.detector_combo.setCurrentIndex(window.detector_combo.findData("hog"))
    assert window.tta_combo.currentData() == "own"  # the model's own, unless the user chose otherwise
    window.tta_combo.setCurrentIndex(window.tta_combo.findData("crops"))
    window.smoothing_check.setChecked(False)
    window.loop_check.setChecked(False)
    window.close()
    again = make_window(settings=qsettings)  # no --model: the remembered one is loaded
    assert again.detector_combo.currentData() == "hog"
    assert again.tta_combo.currentData() == "crops" and not again.smoothing_check.isChecked()
    assert not again.loop_check.isChecked()
    qtbot.waitUntil(lambda: again.model_info is not None, timeout=60000)
    assert again.model_info.path == str(tiny_model_path.resolve())
    assert again.model_combo.itemData(0) == str(tiny_model_path.resolve())


def test_training_dialog_use_this_model_loads_into_worker(qtbot, make_window, tiny_model_path, monkeypatch):
    window = make_window()
    window._on_train_button_clicked()
    dialog = window._training_dialog
    with qtbot.waitSignal(window.worker.model_loaded, timeout=60000):
        dialog.modelReady.emit(str(tiny_model_path))
    assert window.model_info.labels == FER2013_LABELS
    dialog.close()


def test_drop_a_photo_and_a_model(qtbot, make_window, tiny_model_path, data_dir):
    from PyQt5.QtCore import QMimeData, QPointF, QUrl
    from PyQt5.QtGui import QDropEvent

    window = make_window()

    def drop(path):
        mime = QMimeData()
        mime.setUrls([QUrl.fromLocalFile(str(path))])
        window.dropEvent(QDropEvent(QPointF(10, 10), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier))

    with qtbot.waitSignal(window.worker.model_loaded, timeout=60000):
        drop(tiny_model_path)
    with qtbot.waitSignal(window.worker.photo_ready, timeout=30000) as photo:
        drop(data_dir / "justin.jpg")
    assert len(photo.args[0].faces) == 1 and photo.args[0].faces[0].label in FER2013_LABELS


def test_record_with_video_never_overwrites_the_source_or_another_video(qtbot, make_window, tiny_model_path,
                                                                         clip_path, tmp_path, monkeypatch):
    import cv2

    source = tmp_path / "clip.mp4"
    source.write_bytes(clip_path.read_bytes())
    original = source.read_bytes()
    window = make_window(tiny_model_path)
    qtbot.waitUntil(lambda: window.model_info is not None, timeout=60000)
    window.start_source(SourceSpec.file(source))
    qtbot.waitUntil(lambda: window.frames_shown >= 2, timeout=30000)
    # The user picks clip.csv beside the clip: "<csv>.mp4" would be the source itself.
    monkeypatch.setattr("app.gui.output.QFileDialog.getSaveFileName",
                        lambda *a, **k: (str(tmp_path / "clip.csv"), "CSV (*.csv)"))
    window.record_video_check.setChecked(True)
    window.record_button.setChecked(True)
    qtbot.waitUntil(lambda: (tmp_path / "clip.csv").is_file() and
                    len((tmp_path / "clip.csv").read_text().splitlines()) > 4, timeout=30000)
    news = []
    window.worker.status.connect(news.append)
    window.record_button.setChecked(False)
    qtbot.waitUntil(lambda: any("Recording saved" in n for n in news), timeout=10000)
    video = tmp_path / "clip-2.mp4"
    assert source.read_bytes() == original and video.is_file()
    capture = cv2.VideoCapture(str(video))
    ok, frame = capture.read()
    capture.release()
    assert ok and frame.shape == (336, 596, 3)
    # Again: clip-2.mp4 exists now, and without a dialog to ask, a third name is taken.
    window.record_button.setChecked(True)
    qtbot.waitUntil(lambda: (tmp_path / "clip-3.mp4").is_file(), timeout=30000)
    window.record_button.setChecked(False)
    assert source.read_bytes() == original and video.stat().st_size > 1000


def test_smallest_face_and_score_rerun_the_photo_and_are_remembered(qtbot, make_window, qsettings,
                                                                    tiny_model_path, data_dir):
    window = make_window(tiny_model_path)
    qtbot.waitUntil(lambda: window.model_info is not None, timeout=60000)
    open_photo(qtbot, window, data_dir / "12_angry_men.jpg")
    sizes = sorted(min(f.box[2:]) for f in window.view.faces)
    assert len(sizes) >= 9
    with qtbot.waitSignal(window.worker.photo_ready, timeout=30000) as fewer:
        window.min_face_spin.setValue(sizes[len(sizes) // 2])  # the photo is recognised again
    assert 0 < len(fewer.args[0].faces) < len(sizes)
    with qtbot.waitSignal(window.worker.photo_ready, timeout=30000) as none:
        window.min_score_spin.setValue(1.0)
    assert none.args[0].faces == [] and window.view.message == "No face found in this photo."
    window.close()
    again = make_window(settings=qsettings)
    assert again.min_face_spin.value() == sizes[len(sizes) // 2] and again.min_score_spin.value() == 1.0


def test_uncertain_threshold_reruns_the_photo_greys_unsure_faces_and_is_remembered(
        qtbot, make_window, qsettings, data_dir):
    from app.core.model_io import default_model_path

    window = make_window(default_model_path())
    qtbot.waitUntil(lambda: window.model_info is not None, timeout=60000)
    open_photo(qtbot, window, data_dir / "two_people.jpg")
    with qtbot.waitSignal(window.worker.photo_ready, timeout=30000) as sure:
        window.uncertain_spin.setValue(0.0)  # never uncertain
    assert sure.args[0].faces and not any(face.uncertain for face in sure.args[0].faces)
    with qtbot.waitSignal(window.worker.photo_ready, timeout=30000) as unsure:
        window.uncertain_spin.setValue(0.99)
    faces = unsure.args[0].faces
    assert faces and all(face.uncertain and face.label and len(face.probabilities) == 7 for face in faces)
    window.close()
    assert make_window(settings=qsettings).uncertain_spin.value() == pytest.approx(0.99)
