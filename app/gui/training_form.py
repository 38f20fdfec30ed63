"""Helpers of the training dialog's form: remembered settings (QSettings group ``training``), output folders,
the run the form describes, the question asked when closing during a run, and the ETA text."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from PyQt5.QtCore import QSettings
from PyQt5.QtWidgets import QDoubleSpinBox, QMessageBox, QSpinBox, QWidget

from app.core.training.arch_defaults import DEFAULT_WIDTH, TAKES_DROPOUT_SCALE, takes_width
from app.workers.training_protocol import TrainingConfig

logger = logging.getLogger(__name__)

GROUP = "training"
#: Order of the imbalance combo box's items in the form.
IMBALANCE_CHOICES = ("none", "class_weights", "oversample", "focal_loss")
#: What --resume (without a path) continues from, in the output folder.
RESUME_FILES = ("last.keras",)  # the only file the engine writes for --resume


def form_config(ui: Any, resume: str | None = None) -> TrainingConfig:
    """The run the form describes (``resume``: None fresh, "" from the output folder's last.keras)."""
    data = ui.dataEdit.text().strip()
    return TrainingConfig(
        data=data, out=ui.outEdit.text().strip(), arch=ui.archCombo.currentText(),
        width=ui.widthSpin.value() if ui.widthSpin.isEnabled() and ui.widthSpin.value() else None,
        crop=ui.cropSpin.value() or None, weight_decay=ui.weightDecaySpin.value(),
        dropout_scale=(ui.dropoutSpin.value() if ui.dropoutSpin.isEnabled() and ui.dropoutSpin.value() != 1.0
                       else None),
        precision=ui.precisionCombo.currentText(), epochs=ui.epochsSpin.value(), batch_size=ui.batchSpin.value(),
        learning_rate=ui.lrSpin.value(),
        optimizer=ui.optimizerCombo.currentText(), augment=ui.augmentCheck.isChecked(),
        mixup=ui.mixupCheck.isChecked(), imbalance=IMBALANCE_CHOICES[ui.imbalanceCombo.currentIndex()],
        label_smoothing=ui.smoothingSpin.value(),
        val_split=ui.valSplitSpin.value() if data and Path(data).is_dir() else None,
        max_samples=ui.maxSamplesSpin.value() or None, resume=resume,
        init_from=ui.initEdit.text().strip() or None)


def take_architecture(ui: Any, model: str) -> str | None:
    """Set the architecture, width and crop fields to those ``model`` was trained with (its metadata), so a
    run that starts from it builds the same net; returns what was set, or None when the file does not say."""
    from app.core.training.weight_transfer import architecture_of

    options = architecture_of(model)
    arch = str(options.get("arch", ""))
    if ui.archCombo.findText(arch) < 0:
        return None
    ui.archCombo.setCurrentText(arch)
    if takes_width(arch):
        ui.widthSpin.setValue(int(options.get("width") or 0))  # 0: the architecture's own
    ui.cropSpin.setValue(int(options.get("crop") or 0))  # 0: the whole face
    parts = [arch] + [f"{key} {options[key]}" for key in ("width", "crop") if options.get(key)]
    return ", ".join(parts)


def show_width_choice(spin: QSpinBox, arch: str) -> None:
    """Width applies only to architectures that take one; the field says which width it would use."""
    spin.setEnabled(takes_width(arch))
    spin.setSpecialValueText(f"architecture's own ({DEFAULT_WIDTH[arch]})" if takes_width(arch)
                             else f"{arch} takes none")


def show_dropout_choice(spin: QDoubleSpinBox, arch: str) -> None:
    """The dropout scale applies only to architectures with dropout layers (vgg, simple_cnn)."""
    spin.setEnabled(arch in TAKES_DROPOUT_SCALE)


def save_form(ui: Any, window: QWidget, settings: QSettings) -> None:
    """Write every field of the form (and the window's geometry) to ``settings``."""
    values = {
        "data": ui.dataEdit.text().strip(), "out": ui.outEdit.text().strip(),
        "arch": ui.archCombo.currentText(), "width": ui.widthSpin.value(), "crop": ui.cropSpin.value(),
        "dropout_scale": ui.dropoutSpin.value(),
        "weight_decay": ui.weightDecaySpin.value(), "precision": ui.precisionCombo.currentText(),
        "epochs": ui.epochsSpin.value(), "batch_size": ui.batchSpin.value(),
        "learning_rate": ui.lrSpin.value(), "optimizer": ui.optimizerCombo.currentText(),
        "augment": ui.augmentCheck.isChecked(), "mixup": ui.mixupCheck.isChecked(),
        "imbalance": IMBALANCE_CHOICES[ui.imbalanceCombo.currentIndex()],
        "label_smoothing": ui.smoothingSpin.value(), "val_split": ui.valSplitSpin.value(),
        "max_samples": ui.maxSamplesSpin.value(), "init_from": ui.initEdit.text().strip(),
        "splitter": ui.mainSplitter.saveState(),
        "geometry": window.saveGeometry(),
    }
    settings.beginGroup(GROUP)
    for key, value in values.items():
        settings.setValue(key, value)
    settings.endGroup()
    settings.sync()


def restore_form(ui: Any, window: QWidget, settings: QSettings) -> None:
    """Fill the form from ``settings``; fields never saved keep the form's defaults."""
    s = settings
    s.beginGroup(GROUP)
    try:
        for combo, key in ((ui.archCombo, "arch"), (ui.optimizerCombo, "optimizer"),
                           (ui.precisionCombo, "precision")):
            index = combo.findText(str(s.value(key, combo.currentText())))
            if index >= 0:
                combo.setCurrentIndex(index)
        for spin, key, kind in ((ui.widthSpin, "width", int), (ui.cropSpin, "crop", int),
                                (ui.dropoutSpin, "dropout_scale", float),
                                (ui.weightDecaySpin, "weight_decay", float), (ui.epochsSpin, "epochs", int),
                                (ui.batchSpin, "batch_size", int),
                                (ui.lrSpin, "learning_rate", float), (ui.smoothingSpin, "label_smoothing", float),
                                (ui.valSplitSpin, "val_split", float), (ui.maxSamplesSpin, "max_samples", int)):
            spin.setValue(s.value(key, spin.value(), type=kind))
        ui.augmentCheck.setChecked(s.value("augment", ui.augmentCheck.isChecked(), type=bool))
        ui.mixupCheck.setChecked(s.value("mixup", ui.mixupCheck.isChecked(), type=bool))
        imbalance = str(s.value("imbalance", "none"))
        ui.imbalanceCombo.setCurrentIndex(IMBALANCE_CHOICES.index(imbalance) if imbalance in IMBALANCE_CHOICES else 0)
        ui.outEdit.setText(str(s.value("out", "") or ""))
        ui.initEdit.setText(str(s.value("init_from", "") or ""))
        ui.dataEdit.setText(str(s.value("data", "") or ""))
        if s.value("splitter") is not None:
            ui.mainSplitter.restoreState(s.value("splitter"))
        if s.value("geometry") is not None:
            window.restoreGeometry(s.value("geometry"))
    except (TypeError, ValueError) as exc:  # a settings file edited by hand: keep the defaults
        logger.warning("ignoring unreadable training settings: %s", exc)
    finally:
        s.endGroup()


def format_duration(seconds: float) -> str:
    """``75`` -> ``"1:15"``, ``3725`` -> ``"1:02:05"``."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def ask_close_while_training(parent: QWidget, allow_background: bool) -> str:
    """Ask what closing during a run means: "stop", "background" (keep training, only hide) or "cancel".

    "Keep training" is offered only when something (the main window) keeps the hidden dialog alive.
    """
    box = QMessageBox(QMessageBox.Question, "Training is running",
                      "A training run is in progress. Stop it? The best checkpoint so far is kept.", parent=parent)
    stop = box.addButton("Stop training", QMessageBox.DestructiveRole)
    background = box.addButton("Keep training in the background", QMessageBox.AcceptRole) \
        if allow_background else None
    cancel = box.addButton(QMessageBox.Cancel)
    box.setDefaultButton(cancel)
    box.exec_()
    clicked = box.clickedButton()
    if clicked is stop:
        return "stop"
    return "background" if background is not None and clicked is background else "cancel"


def start_log_line(event: dict) -> str:
    """The log pane's line for a "start" event."""
    initial = int(event.get("initial_epoch") or 0)
    return (f"Training {event.get('arch', '?')} on {event.get('train_samples', '?')} images "
            f"({event.get('val_samples', '?')} for validation), {len(event.get('labels') or [])} classes, "
            f"batch {event.get('batch_size', '?')}"
            + (f" in {event['shards']} shards side by side" if int(event.get("shards") or 1) > 1 else "")
            + (f" over {event['replicas']} replicas" if int(event.get("replicas") or 1) > 1 else "")
            + f", {event.get('steps_per_epoch', '?')} steps per epoch"
            + (f", resuming after epoch {initial}" if initial else "") + f" -> {event.get('out', '?')}"
            + (f"; starting from {event['init_from']}" if event.get("init_from") else ""))


def epoch_log_line(event: dict) -> str:
    """The log pane's line for an "epoch_end" event."""
    metrics = event.get("metrics") or {}
    shown = " ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, (int, float)))
    seconds = event.get("seconds")
    took = f" ({seconds:.1f} s)" if isinstance(seconds, (int, float)) else ""
    return f"Epoch {event.get('epoch', '?')}/{event.get('epochs', '?')}: {shown}{took}"


def eta_text(elapsed: float, epoch: int, step: int, steps: int, epochs: int, epoch_seconds: Sequence[float]) -> str:
    """"epoch 0:12 left · run ~4:31" from the time spent on this epoch so far and earlier epochs' durations."""
    epoch_left = elapsed / step * max(0, steps - step)
    per_epoch = sum(epoch_seconds) / len(epoch_seconds) if epoch_seconds else elapsed / step * steps
    run_left = epoch_left + per_epoch * max(0, epochs - epoch)
    return f"epoch {format_duration(epoch_left)} left · run ~{format_duration(run_left)}"


def can_resume(folder: Path) -> bool:
    return any((folder / name).is_file() for name in RESUME_FILES)


def holds_run(folder: Path) -> bool:
    """True when the engine would refuse to start a fresh run in ``folder``."""
    return any((folder / name).exists() for name in ("best.h5", *RESUME_FILES))


def fresh_folder(folder: Path) -> Path:
    """``run`` -> ``run-2`` (or -3, ...): the first sibling that holds no run."""
    n = 2
    while holds_run(folder.with_name(f"{folder.name}-{n}")):
        n += 1
    return folder.with_name(f"{folder.name}-{n}")


def browse_start(text: str) -> str:
    """Where a file chooser opens: the folder of what the field names, else the home folder."""
    path = Path(text.strip()).expanduser() if text.strip() else Path.home()
    return str(path if path.is_dir() else path.parent)
