"""``fer-studio calibrate MODEL DATA``: fit the model's temperature on a held-out split, write a copy.

The temperature (see app/core/calibration.py) is fitted on the probabilities the app computes (same
classifier, same test-time augmentation) and stored in the copy's metadata with the ECE before and after;
a JSON report and a reliability plot are written beside it. The model file given is never changed.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path

from app.core.errors import OutputError

logger = logging.getLogger(__name__)


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model file (.h5, .hdf5 or .keras)")
    parser.add_argument("data", help="FER2013 .csv/.csv.gz (default split PublicTest), or a folder per class")
    parser.add_argument("--split", help="the held-out split to fit on (FER2013: PublicTest, the selection split; "
                                        "folder: val, else test)")
    parser.add_argument("--tta", choices=("none", "flip", "crops"),
                        help="the test-time augmentation the temperature is fitted for (default: the model's own)")
    parser.add_argument("--out", help="the calibrated copy (default: <model>_calibrated.<ext> beside it)")
    parser.add_argument("--json", action="store_true", help="print the calibration report as JSON")


def default_output(model: Path) -> Path:
    return model.with_name(f"{model.stem}_calibrated{model.suffix}")


def run(args: argparse.Namespace) -> int:
    from app.commands.evaluate import check_data_path, load_scored_split
    from app.core.calibration import calibrate, store_temperature, write_calibration
    from app.core.evaluation import predict_array
    from app.core.model_io import load_model

    model_path, data_path = Path(args.model), Path(args.data)
    out = Path(args.out) if args.out else default_output(model_path)
    if out.exists():
        raise OutputError(f"{out}: already exists; nothing is overwritten. Choose another --out.")
    if out.resolve() == model_path.resolve():
        raise OutputError("--out must differ from the model: the model file given is never changed.")
    check_data_path(data_path)
    loaded = load_model(model_path)
    split = args.split or (None if data_path.is_dir() else "PublicTest")
    if split is None:
        from app.core.datasets import folder_layout

        layout = folder_layout(data_path)
        split = "val" if "val" in layout else "test" if "test" in layout else "all"
    x, y, _, split = load_scored_split(loaded, data_path, split)
    tta = args.tta or loaded.spec.tta
    raw = predict_array(loaded, x, tta=tta, calibrated=False)
    report = calibrate(raw, y)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.part{out.suffix}")  # the suffix tells the format
    try:
        shutil.copyfile(model_path, tmp)
        store_temperature(tmp, report.temperature, tta,
                          {"data": data_path.name, "split": split, "samples": report.samples,
                           "ece_before": report.ece_before, "ece_after": report.ece_after})
        tmp.replace(out)
    except OSError as exc:
        raise OutputError(f"{out}: could not write the calibrated model ({exc}).") from exc
    finally:
        if tmp.exists():
            tmp.unlink()
    json_path, png_path = write_calibration(report, out.parent, stem=f"{out.stem}_calibration",
                                            title=f"{model_path.name} on {data_path.name} [{split}] ({tta} TTA)")
    if args.json:
        print(json.dumps({"temperature": report.temperature, "ece_before": report.ece_before,
                          "ece_after": report.ece_after, "nll_before": report.nll_before,
                          "nll_after": report.nll_after, "samples": report.samples, "model": str(out),
                          "report": str(json_path), "reliability_png": str(png_path)}, indent=2))
    else:
        print(f"{model_path.name} on {data_path.name} [{split}], {report.samples} images, {tta} TTA")
        print(f"temperature {report.temperature:.3f}: ECE {report.ece_before:.4f} -> {report.ece_after:.4f}, "
              f"NLL {report.nll_before:.4f} -> {report.nll_after:.4f}")
        print(f"wrote {out}")
        print(f"wrote {json_path}")
        print(f"wrote {png_path}")
    return 0
