"""``fer-studio evaluate MODEL DATA``: accuracy, macro-F1, per-class table, confusion PNG and JSON report.

DATA is a FER2013 CSV (.csv/.csv.gz; split = its Usage, PrivateTest by default) or a folder-per-class set
(split = test, val, train or all; by default test if present, else val, else every image). Class names
are matched to the model's labels, so a 7-class model can be scored on a set with fewer classes; a class
that matches none of them is reported and skipped.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path

from app.core.errors import DatasetError, OutputError
from app.core.recognition.precision import PRECISIONS, resolve_inference_precision

logger = logging.getLogger(__name__)


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model file (.h5, .hdf5 or .keras)")
    parser.add_argument("data", help="FER2013 .csv/.csv.gz, or a folder with one sub-folder per class")
    parser.add_argument("--split", help="FER2013: Training, PublicTest or PrivateTest (default PrivateTest); "
                                        "folder: train, val, test or all (default test, else val, else all)")
    parser.add_argument("--out", help="folder for the JSON report and confusion PNG "
                                      "(default: next to the model, named after model, data and split)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON (only JSON on stdout)")
    parser.add_argument("--tta", nargs="?", const="flip", default=None, choices=("none", "flip", "crops"),
                        help="test-time augmentation: flip (also when given bare) averages each face with its "
                             "mirror image, crops the ten-crop views; default: the model's own (its card's)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="compute precision: auto (default; what the app runs: bfloat16 for nets of "
                             "ordinary convolutions on CPUs with AMX or AVX512-BF16, else float32), float32 "
                             "or bfloat16")
    parser.add_argument("--trust-model", action="store_true",
                        help="load a model that embeds Python code (Lambda layers); only for trusted files")
    parser.add_argument("--batch-size", type=int, default=256,
                        help="images per inference batch (default 256)")


def _default_split(data: Path) -> str:
    if not data.is_dir():
        return "PrivateTest"
    from app.core.datasets import folder_layout

    layout = folder_layout(data)
    for split in ("test", "val"):
        if split in layout:
            return split
    return "all" if "all" in layout else next(iter(layout))


def _data_name(data: Path) -> str:
    name = data.name
    for suffix in (".gz", ".csv"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name or "data"


def default_out_dir(model: Path, data: Path, split: str) -> Path:
    """``<model folder>/<model stem>_eval_<data name>_<split>``: a folder, so the model is never touched."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{model.stem}_eval_{_data_name(data)}_{split}")
    return model.parent / safe


def load_scored_split(loaded: LoadedModel, data_path: Path, split: str | None) -> tuple:  # noqa: F821
    """(images, model-label indices, alignment, split name) of a data set split, read at the size the
    model's classifier cuts its views from; classes the model does not know are left out."""
    from app.core.datasets import load_split
    from app.core.evaluation import align_labels

    spec = loaded.spec
    split = split or _default_split(data_path)
    if not data_path.is_dir():
        from app.core.datasets import FER2013_SPLITS

        # Accept "privatetest" for "PrivateTest": the CSV's Usage values are the only FER2013 split names.
        split = {name.lower(): name for name in FER2013_SPLITS}.get(split.lower(), split)
    x, y_data, data_labels = load_split(data_path, split, spec.crop_from or spec.input_size, spec.channels)
    if len(y_data) == 0:
        raise DatasetError(f"{data_path}: split {split!r} holds no readable images.")
    keep, y, alignment = align_labels(y_data, data_labels, spec.labels)
    alignment.skipped_counts.update({name: int((y_data == data_labels.index(name)).sum())
                                     for name in alignment.unmatched})
    if len(y) == 0:
        raise DatasetError(f"{data_path}: split {split!r} has no images in the classes the model knows.")
    return x[keep], y, alignment, split


def check_data_path(data_path: Path) -> None:
    from app.core.datasets import is_fer2013_csv

    if not data_path.exists():
        raise DatasetError(f"{data_path}: no such file or folder.")
    if not data_path.is_dir() and not is_fer2013_csv(data_path):
        raise DatasetError(f"{data_path}: choose a FER2013 .csv/.csv.gz file or a folder with one sub-folder "
                           "per class.")


def run(args: argparse.Namespace) -> int:
    from app.core.evaluation import evaluate_predictions, predict_array, write_report
    from app.core.model_io import load_model

    model_path, data_path = Path(args.model), Path(args.data)
    if args.batch_size < 1:
        raise DatasetError("--batch-size must be at least 1.")
    check_data_path(data_path)
    loaded = load_model(model_path, trust=args.trust_model)
    spec = loaded.spec
    x, y, alignment, split = load_scored_split(loaded, data_path, args.split)
    y_data_counts = alignment.skipped_counts
    kind = "folder" if data_path.is_dir() else "class"
    for name in alignment.unmatched:
        print(f"skipped {kind} {name!r} ({y_data_counts[name]} images): matches none of the model's labels "
              f"({', '.join(spec.labels)})", file=sys.stderr)
    tta = args.tta or spec.tta

    out_dir = Path(args.out) if args.out else default_out_dir(model_path, data_path, split)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir}: exists and is not a folder; choose another --out.")
    logger.info("scoring %d images of %s/%s", len(y), data_path, split)
    from app.core.calibration import reliability
    from app.core.recognition.classifier import apply_temperature

    precision, _ = resolve_inference_precision(loaded.model, args.precision)
    raw = predict_array(loaded, x, batch_size=args.batch_size, tta=tta, calibrated=False, precision=precision)
    probs = apply_temperature(raw, spec.temperature)
    meta = {
        "model": model_path.name,
        "model_path": str(model_path),
        "data": str(data_path),
        "split": split,
        "tta": tta,
        "precision": precision,
        "class_mapping": {name: (spec.labels[i] if i is not None else None)
                          for name, i in alignment.mapping.items()},
        "skipped_classes": list(alignment.unmatched),
        "skipped_images": int(sum(alignment.skipped_counts.values())),
        "temperature": spec.temperature,
        "ece": reliability(probs, y).ece,
        "ece_uncalibrated": reliability(raw, y).ece,
    }
    report = evaluate_predictions(y, probs, spec.labels, meta=meta)
    try:
        json_path, png_path = write_report(report, out_dir)
    except OutputError as exc:
        raise OutputError(f"{exc} Use --out to write the report elsewhere.") from exc

    if args.json:
        data = report.to_dict()
        data["files"] = {"json": str(json_path), "confusion_png": str(png_path)}
        print(json.dumps(data, indent=2))
    else:
        print(f"{model_path.name} on {data_path.name} [{split}], {report.num_samples} images"
              f"{f' ({tta} TTA)' if tta != 'none' else ''}, {precision}")
        print(report.format_table())
        print(f"wrote {json_path}")
        print(f"wrote {png_path}")
    return 0
