"""An ensemble is one file: a plain Keras model that averages the probabilities of its members.

Members may differ in input size, crop, channels and pixel normalisation. The ensemble reads faces at the
largest size any member is read at (a crop-trained member's ``crop_from``), as raw 0-255 pixels.

When every member was trained on crops, the ensemble is a crop model too: its input is the window of the
face that its most demanding member needs (44x44 of 48x48 for members trained on 44 of 48), and its spec
says ``crop_from``. So the classifier's test-time augmentation cuts the windows the members were trained
on: ``none`` the centre window, ``crops`` the four corner windows and the centre one of the 48x48 face.
(Were the ensemble's input the whole face, ten-crop would cut windows from a face enlarged to 52x52, then
each member would centre-crop those: faces 8% larger than in training, windows that move less.) A member
that reads the whole face (no crop) makes the ensemble read the whole face, as before.

Each member gets its own stock-layer adapter in front: ``Rescaling`` to its normalisation, a grey<->RGB
conversion (``Concatenate`` of the grey channel, or a fixed 1x1 ``Conv2D`` with the luminance weights),
``Resizing`` where the window is at another scale than the member's, then ``CenterCrop`` to a member
that reads a smaller window. Members whose labels are the same set in another order are re-ordered by a
fixed ``Dense`` permutation. Only stock Keras layers, so the file loads anywhere and passes the safe
loader.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from app.core.errors import ModelLoadError
from app.core.model_io import LoadedModel, ModelSpec

logger = logging.getLogger(__name__)

_SCALE = {"minus1_1": (1 / 127.5, -1.0), "zero_1": (1 / 255.0, 0.0), "raw": (1.0, 0.0)}
_LUMINANCE_RGB = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class EnsembleSpec:
    labels: tuple[str, ...]
    size: tuple[int, int]  # the face, at the largest size a member reads it
    channels: int
    window: tuple[int, int]  # the ensemble's input: the part of that face the members need (== size: all of it)

    @property
    def fraction(self) -> tuple[float, float]:
        """The window's share of the face's height and width (1.0: the whole face)."""
        return self.window[0] / self.size[0], self.window[1] / self.size[1]


def _fraction(spec: ModelSpec) -> tuple[float, float]:
    """The share of the face a member reads: its crop window over the face it was cut from (1.0: all)."""
    if not spec.crop_from:
        return 1.0, 1.0
    return min(1.0, spec.input_size[0] / spec.crop_from[0]), min(1.0, spec.input_size[1] / spec.crop_from[1])


def plan(members: Sequence[LoadedModel]) -> EnsembleSpec:
    """The ensemble's labels (the first member's order), face size, window and channels; ModelLoadError
    when the members do not predict the same classes."""
    if len(members) < 2:
        raise ModelLoadError("an ensemble needs at least two models")
    labels = members[0].spec.labels
    for member in members[1:]:
        if sorted(x.lower() for x in member.spec.labels) != sorted(x.lower() for x in labels):
            raise ModelLoadError(f"{member.path}: predicts {', '.join(member.spec.labels)}, but {members[0].path} "
                                 f"predicts {', '.join(labels)}; ensemble members need the same classes.")
    sizes = [m.spec.crop_from or m.spec.input_size for m in members]
    size = max(sizes, key=lambda s: s[0] * s[1])
    channels = max(m.spec.channels for m in members)
    fractions = [_fraction(m.spec) for m in members]
    share = max(f[0] for f in fractions), max(f[1] for f in fractions)
    window = round(size[0] * share[0]), round(size[1] * share[1])
    return EnsembleSpec(labels, size, channels, window)


def _adapter(member: LoadedModel, plan_: EnsembleSpec, x: Any, index: int) -> Any:
    import keras
    from keras import layers

    spec = member.spec
    scale, offset = _SCALE[spec.normalization]
    prefix = f"m{index}_"
    if (scale, offset) != (1.0, 0.0):
        x = layers.Rescaling(scale, offset, name=prefix + "rescale")(x)
    if spec.channels == 3 and plan_.channels == 1:
        x = layers.Concatenate(name=prefix + "grey_to_rgb")([x, x, x])
    elif spec.channels == 1 and plan_.channels == 3:
        grey = layers.Conv2D(1, 1, use_bias=False, trainable=False, name=prefix + "rgb_to_grey")
        x = grey(x)
        grey.set_weights([np.array(_LUMINANCE_RGB, np.float32).reshape(1, 1, 3, 1)])
    # The window at the member's scale (its face is crop_from or input_size), then the member's own window.
    source = spec.crop_from or spec.input_size
    scaled = round(source[0] * plan_.fraction[0]), round(source[1] * plan_.fraction[1])
    if scaled != tuple(plan_.window):
        x = layers.Resizing(*scaled, interpolation="bilinear", name=prefix + "resize")(x)
    if scaled != tuple(spec.input_size):
        x = layers.CenterCrop(*spec.input_size, name=prefix + "crop")(x)
    body = keras.Model(member.model.inputs[0], member.model.outputs[0], name=f"member{index}_{member.model.name}")
    y = body(x)
    order = [[s.lower() for s in spec.labels].index(label.lower()) for label in plan_.labels]
    if order != list(range(len(order))):
        permute = layers.Dense(len(order), use_bias=False, trainable=False, name=prefix + "reorder")
        y = permute(y)
        permute.set_weights([np.eye(len(order), dtype=np.float32)[:, order]])
    return y


def build_ensemble(members: Sequence[LoadedModel]) -> tuple[Any, ModelSpec]:
    """(the averaging Keras model, its spec: raw pixels, the window of the largest face its members need, and
    that face as ``crop_from`` when the window is smaller; the first member's labels)."""
    import keras
    from keras import layers

    plan_ = plan(members)
    inputs = keras.Input((*plan_.window, plan_.channels), name="image")
    outputs = [_adapter(member, plan_, inputs, i) for i, member in enumerate(members)]
    averaged = layers.Average(name="predictions")(outputs)
    model = keras.Model(inputs, averaged, name="ensemble")
    info = {"members": [{"file": Path(m.path).name if m.path else None, "arch": m.spec.arch,
                         "input_size": list(m.spec.input_size), "crop_from": m.spec.crop_from,
                         "accuracy": (m.spec.info.get("metrics") or {}).get("val_accuracy")} for m in members]}
    spec = ModelSpec(labels=plan_.labels, input_size=plan_.window, channels=plan_.channels, normalization="raw",
                     arch="ensemble", tta="flip", info=info,
                     crop_from=plan_.size if plan_.window != plan_.size else None)
    return model, spec
