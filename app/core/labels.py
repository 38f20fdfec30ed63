"""Label sets: FER2013's seven emotions, folder-derived label sets, and a colour for each label."""

from __future__ import annotations

import colorsys
from typing import Sequence

#: FER2013's label order (emotion column 0..6), also the order of the published mini_XCEPTION models.
FER2013_LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

# RGB colours chosen so the seven emotions are easy to tell apart on video.
_FER_COLOURS: dict[str, tuple[int, int, int]] = {
    "angry": (230, 57, 70),
    "disgust": (106, 153, 78),
    "fear": (155, 93, 229),
    "happy": (255, 190, 11),
    "sad": (58, 134, 255),
    "surprise": (255, 0, 110),
    "neutral": (173, 181, 189),
}

#: Synonyms seen in folder-per-class data sets, mapped to FER2013 names.
_SYNONYMS: dict[str, str] = {
    "anger": "angry",
    "disgusted": "disgust",
    "fearful": "fear",
    "scared": "fear",
    "happiness": "happy",
    "joy": "happy",
    "sadness": "sad",
    "surprised": "surprise",
    "calm": "neutral",
}

IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".jp2",
)


def normalise_label(name: str) -> str:
    """Lower-case a label and map common synonyms ("Happiness", "Fearful") to FER2013's names."""
    key = name.strip().lower().replace(" ", "_")
    return _SYNONYMS.get(key, key)


def colour_for(label: str) -> tuple[int, int, int]:
    """RGB colour for a label; labels outside FER2013 get a stable colour from their name."""
    known = _FER_COLOURS.get(normalise_label(label))
    if known is not None:
        return known
    hue = (sum(ord(c) * 31 ** i for i, c in enumerate(label)) % 360) / 360.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.65, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def default_labels(num_classes: int) -> tuple[str, ...]:
    """Labels for a model file that carries none: FER2013's for 7 outputs, class_0.. otherwise."""
    if num_classes == len(FER2013_LABELS):
        return FER2013_LABELS
    return tuple(f"class_{i}" for i in range(num_classes))


def match_labels(names: Sequence[str], model_labels: Sequence[str]) -> dict[str, int | None]:
    """Map each data-set class name to the index of the model label it matches, or None."""
    wanted = {normalise_label(label): i for i, label in enumerate(model_labels)}
    return {name: wanted.get(normalise_label(name)) for name in names}


def parse_labels(text: str | None) -> tuple[str, ...] | None:
    """``"a,b,c"`` -> ("a", "b", "c"); ``"fer2013"`` -> FER2013's seven labels; None -> None.

    Raises ModelLoadError for an empty or repeated name (the flag overrides a model's labels).
    """
    if text is None:
        return None
    if text.strip().lower() == "fer2013":
        return FER2013_LABELS
    from app.core.errors import ModelLoadError

    labels = tuple(part.strip() for part in text.split(","))
    if any(not label for label in labels):
        raise ModelLoadError(f"--labels {text!r}: empty label name; give comma-separated names like a,b,c.")
    if len(set(labels)) != len(labels):
        raise ModelLoadError(f"--labels {text!r}: a label appears twice; give distinct names like a,b,c.")
    return labels
