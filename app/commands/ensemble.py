"""``fer-studio ensemble A.h5 B.h5 ... --out photo.h5``: one plain Keras model averaging its members.

See app/core/training/ensemble.py for how members of different input sizes, crops, channels and
normalisations are adapted with stock layers. With ``--calibrate-on DATA`` the ensemble's temperature is
fitted on the held-out split (FER2013: PublicTest) before the file is written.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from app.core.errors import OutputError

logger = logging.getLogger(__name__)


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="+", help="two or more member models (.h5, .hdf5, .keras)")
    parser.add_argument("--out", required=True, help="the ensemble file to write (.h5 or .keras); never overwritten")
    parser.add_argument("--tta", choices=("none", "flip", "crops"), default="flip",
                        help="the test-time augmentation recorded as the ensemble's own (default flip)")
    parser.add_argument("--calibrate-on", metavar="DATA",
                        help="fit the temperature on this data set's held-out split (FER2013: PublicTest)")
    parser.add_argument("--split", help="the split of --calibrate-on (default PublicTest, or a folder's val)")


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from app.core.model_io import load_model, save_model
    from app.core.training.ensemble import build_ensemble

    out = Path(args.out)
    if out.exists():
        raise OutputError(f"{out}: already exists; nothing is overwritten. Choose another --out.")
    members = [load_model(path) for path in args.models]
    model, spec = build_ensemble(members)
    spec = replace(spec, tta=args.tta)
    print(f"ensemble of {len(members)}: " + ", ".join(f"{Path(p).name} ({m.spec.arch or '?'}, "
                                                      f"{m.spec.input_size[0]}x{m.spec.input_size[1]})"
                                                      for p, m in zip(args.models, members)))
    if args.calibrate_on:
        from app.commands.evaluate import check_data_path, load_scored_split
        from app.core.calibration import calibrate
        from app.core.evaluation import evaluate_predictions, predict_array
        from app.core.model_io import LoadedModel

        data = Path(args.calibrate_on)
        check_data_path(data)
        loaded = LoadedModel(model=model, spec=spec, path=None)
        x, y, _, split = load_scored_split(loaded, data, args.split or (None if data.is_dir() else "PublicTest"))
        probabilities = predict_array(loaded, x, tta=args.tta, calibrated=False)
        report = calibrate(probabilities, y)
        scored = evaluate_predictions(y, probabilities, spec.labels)
        spec = replace(spec, temperature=report.temperature,
                       info={**spec.info, "calibration": {"data": data.name, "split": split, "samples": report.samples,
                                                          "ece_before": report.ece_before,
                                                          "ece_after": report.ece_after}})
        print(f"calibrated on {data.name} [{split}]: temperature {report.temperature:.3f}, "
              f"ECE {report.ece_before:.4f} -> {report.ece_after:.4f}; there with TTA {args.tta}: accuracy "
              f"{scored.accuracy:.2%} ({scored.num_correct} of {scored.num_samples}), macro-F1 {scored.macro_f1:.3f}")
    save_model(model, out, spec)
    print(f"wrote {out}")
    return 0
