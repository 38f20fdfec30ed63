"""Milliseconds per call for 1 and 8 faces: ``model.predict``, calling the model, and EmotionClassifier.

    python bench/classifier.py [--model FILE] [--runs 200] [--threads N] [--precision auto|float32|bfloat16]

Uses --model, else the bundled default model, else an untrained mini_XCEPTION-sized net (64x64 grey,
7 classes: the published models' shape). Prints the median (and 10th/90th percentiles) after warm-up.
The target on 2 CPU cores is <= 2 ms for 1 face and <= 5 ms for 8 faces for our classifier.
The classifier runs at --precision (default auto, as the app: bfloat16 for nets of ordinary convolutions on
CPUs with AMX or AVX512-BF16); the plain ``model.predict`` / eager cases always run the float32 model.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np


def _model(path: str | None):  # type: ignore[no-untyped-def]
    from app.core.model_io import LoadedModel, ModelSpec, default_model_path, load_model

    chosen = path or default_model_path()
    if chosen is not None:
        return load_model(chosen), str(chosen)
    from app.core.training.architectures import build_model

    model = build_model("mini_xception", (64, 64, 1), 7)
    what = "untrained mini_xception (app.core.training.architectures), 64x64x1"
    from app.core.labels import FER2013_LABELS

    spec = ModelSpec(labels=FER2013_LABELS, input_size=(64, 64), channels=1, normalization="minus1_1")
    return LoadedModel(model=model, spec=spec, path=None, spec_source="inferred"), what


def _time(fn, runs: int, warmup: int = 10) -> tuple[float, float, float]:  # type: ignore[no-untyped-def]
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000.0)
    samples.sort()
    return statistics.median(samples), samples[len(samples) // 10], samples[(9 * len(samples)) // 10]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model file (default: bundled model, else mini_XCEPTION-sized)")
    parser.add_argument("--runs", type=int, default=200, help="timed calls per case (default 200)")
    parser.add_argument("--threads", type=int, default=0, help="TF intra/inter-op threads (0: TF's choice)")
    parser.add_argument("--precision", choices=("auto", "float32", "bfloat16"), default="auto",
                        help="the classifier's compute precision (default auto, as the app)")
    args = parser.parse_args()

    import tensorflow as tf

    from app.core.recognition.classifier import EmotionClassifier, set_inference_threads

    if args.threads:
        set_inference_threads(args.threads)

    loaded, what = _model(args.model)
    model = loaded.model
    height, width = loaded.spec.input_size
    channels = loaded.spec.channels
    print(f"model: {what}; input {height}x{width}x{channels}; {model.count_params():,} parameters; "
          f"its own TTA: {loaded.spec.tta}")
    print(f"tensorflow {tf.__version__}; CPU cores visible: {os.cpu_count()}; runs per case: {args.runs}")

    rng = np.random.default_rng(0)
    classifier = EmotionClassifier(loaded, precision=args.precision)
    classifier_tta = EmotionClassifier(loaded, tta="flip", precision=args.precision)
    classifier_crops = EmotionClassifier(loaded, tta="crops", precision=args.precision)
    print(f"classifier precision: {classifier.precision} ({classifier.precision_reason})")
    print(f"{'case':<46} {'faces':>5} {'median ms':>10} {'p10':>7} {'p90':>7}")
    for faces in (1, 8):
        batch = rng.uniform(-1, 1, (faces, height, width, channels)).astype(np.float32)
        crops = [rng.integers(0, 256, (150, 150, 3), dtype=np.uint8) for _ in range(faces)]
        cases = [
            ("model.predict(batch)", lambda b=batch: model.predict(b, verbose=0)),
            ("model(batch, training=False) (eager)", lambda b=batch: model(b, training=False)),
            ("EmotionClassifier.predict(crops)", lambda c=crops: classifier.predict(c)),
            ("EmotionClassifier(tta='flip').predict(crops)", lambda c=crops: classifier_tta.predict(c)),
            ("EmotionClassifier(tta='crops').predict(crops)", lambda c=crops: classifier_crops.predict(c)),
        ]
        for name, fn in cases:
            runs = max(20, args.runs // 5) if "predict(batch)" in name else args.runs
            median, p10, p90 = _time(fn, runs)
            print(f"{name:<46} {faces:>5} {median:>10.2f} {p10:>7.2f} {p90:>7.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
