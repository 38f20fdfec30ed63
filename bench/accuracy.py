"""Re-evaluate every bundled model on FER2013 PublicTest and PrivateTest and print the table.

    python bench/accuracy.py [--data ../shared/data/fer2013.csv.gz] [--models models] [--json]
                             [--precision auto|float32|bfloat16]

Each model is scored through the app's classifier without test-time augmentation (TTA), with a flip, with
ten crops, and reports macro-F1 and the expected calibration error (ECE, before / after the model's own
temperature) for its own TTA (the one on its card). PublicTest is the selection split; PrivateTest is the
one to report (see ../shared/data/README.md). ``--splits PublicTest`` scores the selection split only.
``--precision`` is the classifier's compute precision (default auto, what the app runs).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.core.calibration import reliability  # noqa: E402
from app.core.datasets import load_fer2013  # noqa: E402
from app.core.evaluation import evaluate_predictions, predict_array  # noqa: E402
from app.core.model_io import MODEL_SUFFIXES, load_model  # noqa: E402
from app.core.recognition.classifier import apply_temperature  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "fer2013.csv.gz"))
    parser.add_argument("--models", default=str(REPO / "models"), help="a folder of models, or one model file")
    parser.add_argument("--json", action="store_true", help="print one JSON object per model and split")
    parser.add_argument("--splits", nargs="+", default=["PublicTest", "PrivateTest"])
    parser.add_argument("--precision", choices=("auto", "float32", "bfloat16"), default="auto",
                        help="the classifier's compute precision (default auto, as the app)")
    args = parser.parse_args()

    target = Path(args.models)
    files = [target] if target.is_file() else sorted(p for p in target.iterdir() if p.suffix.lower() in MODEL_SUFFIXES)
    if not files:
        print(f"no models in {target}", file=sys.stderr)
        return 1
    splits = load_fer2013(args.data, splits=args.splits)
    if not args.json:
        print(f"{'model':34s} {'split':12s} {'none':>7s} {'flip':>7s} {'crops':>7s} {'own TTA':>8s} {'macroF1':>8s} "
              f"{'ECE raw':>8s} {'ECE cal':>8s} {'s':>5s}")
    for path in files:
        loaded = load_model(path)
        for split in args.splits:
            data = splits[split]
            started = time.perf_counter()
            raw = {tta: predict_array(loaded, data.images, tta=tta, calibrated=False, precision=args.precision)
                   for tta in ("none", "flip", "crops")}
            seconds = time.perf_counter() - started
            accuracy = {tta: evaluate_predictions(data.labels, p, loaded.spec.labels).accuracy
                        for tta, p in raw.items()}
            own = raw[loaded.spec.tta]
            calibrated = apply_temperature(own, loaded.spec.temperature)
            report = evaluate_predictions(data.labels, calibrated, loaded.spec.labels)
            row = {"model": path.name, "split": split, "n": len(data), "precision": args.precision,
                   "accuracy": accuracy,
                   "own_tta": loaded.spec.tta, "macro_f1": report.macro_f1, "temperature": loaded.spec.temperature,
                   "ece_uncalibrated": reliability(own, data.labels).ece,
                   "ece": reliability(calibrated, data.labels).ece}
            if args.json:
                print(json.dumps(row))
            else:
                print(f"{path.name:34s} {split:12s} " + " ".join(f"{100 * accuracy[t]:6.2f}%" for t in accuracy)
                      + f" {loaded.spec.tta:>8s} {report.macro_f1:8.4f} {row['ece_uncalibrated']:8.4f} "
                        f"{row['ece']:8.4f} {seconds:5.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
