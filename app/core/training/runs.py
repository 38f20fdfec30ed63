"""A training run's folder: refusing a folder that holds another run, reading a run back for --resume, and
the final report (scores with the model's own TTA, the fitted temperature) written beside best.h5."""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

from app.core.datasets import Split
from app.core.errors import OutputError
from app.core.model_io import read_spec
from app.core.training.events import EventSink

logger = logging.getLogger(__name__)

BEST_NAME, LAST_NAME = "best.h5", "last.keras"


def check_output_folder(out: Path, resume: bool) -> None:
    """Refuse a folder we cannot write, or one holding another run (nothing the user has is overwritten)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"{out}: cannot write to the output folder ({exc}). Choose another folder.") from exc
    if not resume and ((out / BEST_NAME).exists() or (out / LAST_NAME).exists()):
        raise OutputError(f"{out} already holds a training run ({BEST_NAME}/{LAST_NAME}). Choose a new output "
                          "folder, or continue that run with --resume.")


def load_run_config(run: str | os.PathLike[str]) -> dict[str, Any]:
    """The saved config.json of a run (its folder, or its last.keras), for --resume; {} for a run without
    one (then the data and --out must be given again)."""
    folder = Path(run)
    if folder.suffix == ".keras":
        folder = folder.parent
    path = folder / "config.json"
    if not path.is_file():
        logger.warning("%s has no config.json: resuming with the options given now", folder)
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise OutputError(f"{path}: cannot read the run's config ({exc}).") from exc
    if not isinstance(data, dict):
        raise OutputError(f"{path}: the run's config is not a JSON object.")
    return data


def resume_run(path: Path) -> tuple[Any, Any, int, float, int | None]:
    """Reload last.keras (weights + optimizer state) and where it stopped."""
    import keras

    if path.is_dir():
        path = path / LAST_NAME
    if not path.is_file():
        raise OutputError(f"{path}: no checkpoint to resume from (expected {LAST_NAME} of an earlier run).")
    spec = read_spec(path)
    info = spec.info if spec else {}
    model = keras.models.load_model(path, compile=True, safe_mode=True)
    # With random erasing the trainer is eraser -> architecture; otherwise it is the architecture itself.
    base = model.layers[-1] if isinstance(model.layers[-1], keras.Model) else model
    metrics = info.get("metrics", {})
    best = metrics.get("best")
    logger.info("resuming %s after epoch %s (best val_accuracy %s)", path, info.get("epoch"), best)
    best_value = float(best) if best is not None else -math.inf
    return model, base, int(info.get("epoch", 0)), best_value, metrics.get("best_epoch")


def final_report(best_path: Path, val: Split, labels: tuple[str, ...], out: Path, sink: EventSink,
                  split_name: str = "val") -> dict | None:
    """Score the best checkpoint on the validation split with its own test-time augmentation (ten-crop for
    crop-trained models, flip otherwise), fit its temperature there and record both in best.h5; writes
    report.json, report_confusion.png, calibration.json and calibration_reliability.png."""
    from app.core.calibration import calibrate, store_temperature, write_calibration
    from app.core.evaluation import evaluate_predictions, predict_array, write_report
    from app.core.model_io import load_model

    loaded = load_model(best_path)
    tta = "crops" if loaded.spec.crop_from else "flip"
    raw = predict_array(loaded, val.images, tta=tta, calibrated=False)
    calibration = calibrate(raw, val.labels)
    store_temperature(best_path, calibration.temperature, tta,
                      {"split": split_name, "samples": calibration.samples, "ece_before": calibration.ece_before,
                       "ece_after": calibration.ece_after})
    write_calibration(calibration, out, title=f"{best_path.name} on {split_name} ({tta} TTA)")
    report = evaluate_predictions(val.labels, raw, loaded.spec.labels,
                                  meta={"model": best_path.name, "split": split_name, "tta": tta,
                                        "temperature": calibration.temperature,
                                        "ece_before": calibration.ece_before, "ece_after": calibration.ece_after})
    json_path, png_path = write_report(report, out, stem="report")
    data = report.to_dict()
    sink.emit("report", path=json_path, confusion_png=png_path, accuracy=data["accuracy"], macro_f1=data["macro_f1"],
              per_class=data.get("per_class"), tta=tta, temperature=calibration.temperature,
              ece_before=calibration.ece_before, ece_after=calibration.ece_after)
    return data
