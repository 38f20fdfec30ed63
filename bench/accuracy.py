"""Re-evaluate every bundled model on FER2013 PublicTest and PrivateTest and print the table.

    python bench/accuracy.py [--data ../shared/data/fer2013.csv.gz] [--models models] [--json]

Each model is scored with and without horizontal-flip test-time augmentation (TTA). PublicTest is the
selection split; PrivateTest is the one to report (see ../shared/data/README.md).
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

from app.core.datasets import load_fer2013  # noqa: E402
from app.core.evaluation import evaluate_model  # noqa: E402
from app.core.model_io import MODEL_SUFFIXES, load_model  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "fer2013.csv.gz"))
    parser.add_argument("--models", default=str(REPO / "models"), help="a folder of models, or one model file")
    parser.add_argument("--json", action="store_true", help="print one JSON object per model and split")
    args = parser.parse_args()

    target = Path(args.models)
    files = [target] if target.is_file() else sorted(p for p in target.iterdir() if p.suffix.lower() in MODEL_SUFFIXES)
    if not files:
        print(f"no models in {target}", file=sys.stderr)
        return 1
    splits = load_fer2013(args.data, splits=["PublicTest", "PrivateTest"])
    if not args.json:
        print(f"{'model':34s} {'split':12s} {'acc':>7s} {'acc+TTA':>8s} {'macroF1':>8s} {'F1+TTA':>7s} {'s':>5s}")
    for path in files:
        loaded = load_model(path)
        for split in ("PublicTest", "PrivateTest"):
            data = splits[split]
            started = time.perf_counter()
            plain = evaluate_model(loaded, data.images, data.labels)
            flipped = evaluate_model(loaded, data.images, data.labels, tta=True)
            seconds = time.perf_counter() - started
            if args.json:
                print(json.dumps({"model": path.name, "split": split, "n": len(data), "accuracy": plain.accuracy,
                                  "accuracy_tta": flipped.accuracy, "macro_f1": plain.macro_f1,
                                  "macro_f1_tta": flipped.macro_f1}))
            else:
                print(f"{path.name:34s} {split:12s} {100 * plain.accuracy:6.2f}% {100 * flipped.accuracy:7.2f}% "
                      f"{plain.macro_f1:8.4f} {flipped.macro_f1:7.4f} {seconds:5.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
