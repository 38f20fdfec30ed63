"""Start a training from an existing model's weights (``fer-studio train --init-from MODEL``).

Fine-tuning the bundled model on a user's own folder-per-class set, or a second learning-rate cycle on a
finished FER2013 run, both start from a trained model rather than from random weights. The new run builds
its architecture as usual; this module copies the source model's weights into it, layer by layer in order.
The classifier head (the last layer with weights) is matched by class name, so a data set whose classes
are a subset or a reordering of the source model's labels keeps what the head learnt for each class;
classes the source never had start from fresh weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from app.core.errors import ModelLoadError
from app.core.labels import match_labels


@dataclass(frozen=True)
class TransferReport:
    """What was copied from the source model."""

    source: Path
    layers_copied: int  # layers with weights, head included when at least one class matched
    head_classes: tuple[str, ...]  # data-set classes whose head weights came from the source
    new_classes: tuple[str, ...]  # data-set classes the source model has no label for

    def describe(self) -> str:
        head = (f"head: {len(self.head_classes)} of {len(self.head_classes) + len(self.new_classes)} classes "
                "from the source" + (f", new: {', '.join(self.new_classes)}" if self.new_classes else ""))
        return f"weights from {self.source.name}: {self.layers_copied} layers; {head}"


def _weighted_layers(model: Any) -> list[Any]:
    """Layers that own weights, in order, looking inside nested models."""
    found: list[Any] = []
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:  # a nested Model / Sequential
            found.extend(_weighted_layers(layer))
        elif layer.get_weights():
            found.append(layer)
    return found


def transfer_weights(source: Any, source_labels: Sequence[str], target: Any, target_labels: Sequence[str],
                     source_path: Path) -> TransferReport:
    """Copy ``source``'s weights into ``target`` (same architecture); raise ModelLoadError if they differ.

    Every layer but the head must have identical weight shapes. The head's output units are mapped by class
    name (FER2013's and a folder set's spellings of a label match, see app.core.labels.match_labels).
    """
    src_layers, dst_layers = _weighted_layers(source), _weighted_layers(target)
    if len(src_layers) != len(dst_layers) or not dst_layers:
        raise ModelLoadError(
            f"{source_path}: cannot start from this model: it has {len(src_layers)} layers with weights, the "
            f"chosen architecture {len(dst_layers)}. Pick the --arch the model was trained with.")
    body = list(zip(src_layers[:-1], dst_layers[:-1]))
    for index, (src, dst) in enumerate(body):
        src_shapes = [w.shape for w in src.get_weights()]
        dst_shapes = [w.shape for w in dst.get_weights()]
        if src_shapes != dst_shapes:
            raise ModelLoadError(
                f"{source_path}: cannot start from this model: layer {index + 1} ({dst.name}) has weights "
                f"{dst_shapes} in the chosen architecture but {src_shapes} in the model. Pick the --arch and "
                "--input-size / --color the model was trained with.")
    head_src, head_dst = src_layers[-1], dst_layers[-1]
    src_w, dst_w = head_src.get_weights(), head_dst.get_weights()
    if len(src_w) != len(dst_w) or any(s.shape[:-1] != d.shape[:-1] for s, d in zip(src_w, dst_w)):
        raise ModelLoadError(
            f"{source_path}: cannot start from this model: its last layer ({head_src.name}) does not fit the "
            "chosen architecture's. Pick the --arch the model was trained with.")
    if len(source_labels) != src_w[0].shape[-1] or len(target_labels) != dst_w[0].shape[-1]:
        raise ModelLoadError(f"{source_path}: the model's labels do not match its number of outputs.")

    for src, dst in body:
        dst.set_weights(src.get_weights())
    matches = match_labels(target_labels, source_labels)
    head_classes = tuple(name for name in target_labels if matches[name] is not None)
    new_classes = tuple(name for name in target_labels if matches[name] is None)
    if head_classes:
        merged = [np.array(w, copy=True) for w in dst_w]
        for column, name in enumerate(target_labels):
            source_column = matches[name]
            if source_column is not None:
                for new, old in zip(merged, src_w):
                    new[..., column] = old[..., source_column]
        head_dst.set_weights(merged)
    return TransferReport(source=source_path, layers_copied=len(body) + (1 if head_classes else 0),
                          head_classes=head_classes, new_classes=new_classes)


def architecture_of(model: str | Path) -> dict[str, object]:
    """The architecture options (arch, width, crop, input_size) a model file was trained with, from its own
    metadata, for a run that starts from it; {} when it does not say (a model from elsewhere, an ensemble)
    or cannot be read (loading it then reports why). Reads no weights and needs no Keras."""
    from app.core.model_io import read_spec
    from app.core.training.arch_defaults import ARCHITECTURE_NAMES

    try:
        spec = read_spec(model)
    except Exception:  # noqa: BLE001 - the load that follows gives the clear message for a bad file
        return {}
    if spec is None or spec.arch not in ARCHITECTURE_NAMES:
        return {}
    options: dict[str, object] = {"arch": spec.arch}
    config = spec.info.get("config")
    if isinstance(config, dict) and config.get("arch") == spec.arch:
        options.update({key: config[key] for key in ("width", "crop") if config.get(key) is not None})
        if config.get("input_size"):
            options["input_size"] = tuple(config["input_size"])
    return options
