"""Face detection options shared by the commands that find faces (``predict``, ``analyze``).

    add_detection_arguments(parser)          # --detector, --min-face-size, --min-score, --align
    build_pipeline(model, **detection_kwargs(args), ...)
"""

from __future__ import annotations

import argparse
from typing import Any


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of pixels, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more pixels, got {value}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value:g}")
    return value


def add_detection_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --detector, --min-face-size, --min-score and --align to ``parser``."""
    from app.core.recognition.detection import DEFAULT_DETECTOR, DETECTORS

    parser.add_argument("--detector", choices=DETECTORS, default=DEFAULT_DETECTOR,
                        help=f"face detector (default: {DEFAULT_DETECTOR}, which finds the most faces at "
                        "live speed; haar is OpenCV's cascade, cnn is dlib's slow but pose-robust one)")
    parser.add_argument("--min-face-size", type=_non_negative_int, default=0, metavar="PX",
                        help="drop faces whose box is smaller than PX pixels on its shorter side (default 0: "
                        "keep all)")
    parser.add_argument("--min-score", type=_fraction, default=0.0, metavar="S",
                        help="drop faces the detector is less sure of than S, 0..1 on each detector's own "
                        "scale (default 0: keep all)")
    parser.add_argument("--align", action="store_true", help="rotate each face so the eyes are level")


def add_tta_argument(parser: argparse.ArgumentParser, model_default: bool = False) -> None:
    """Add --tta [own|none|flip|crops] (bare: flip; default: none, or with ``model_default`` the model's own)."""
    from app.core.recognition.classifier import OWN_TTA, TTA_MODES

    default = OWN_TTA if model_default else "none"
    parser.add_argument("--tta", nargs="?", const="flip", default=None if model_default else "none",
                        choices=(OWN_TTA, *TTA_MODES),
                        help="test-time augmentation: flip (also when given bare) averages each face with its "
                        "mirror image; crops averages ten windows of it (slower); own: the model's own, the one "
                        f"its card's accuracy was measured with; default: {default}")


def add_uncertainty_argument(parser: argparse.ArgumentParser) -> None:
    """Add --uncertain-below P."""
    from app.core.recognition.classifier import DEFAULT_UNCERTAIN_BELOW

    parser.add_argument("--uncertain-below", type=_fraction, default=DEFAULT_UNCERTAIN_BELOW, metavar="P",
                        help="call a face uncertain when its top calibrated probability is below P (default "
                        f"{DEFAULT_UNCERTAIN_BELOW:g}; 0: never); its label and probabilities are still given")


def detection_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The :func:`app.core.recognition.pipeline.build_pipeline` keywords for the parsed options."""
    return {"detector": args.detector, "min_face_size": args.min_face_size, "min_score": args.min_score,
            "align": args.align}
