"""Load and save emotion models (.h5/.hdf5/.keras) with their metadata, safely and atomically.

Models this project saves carry a ``fer_studio`` JSON blob (labels, input spec, normalisation, training
facts) inside the file: a root attribute of HDF5 files, a ``fer_studio.json`` entry of .keras archives.
Files without it (the published Keras-2 mini_XCEPTION models, say) get labels inferred from their output
size, input size and channels from the model itself, and the user may override either with arguments or
with a sidecar JSON next to the model (``model.h5.json`` or ``model.json``).

Loading is safe by default: the model's config is read as plain JSON and any layer that embeds Python
(Lambda layers, Keras-2 marshalled functions) is refused before Keras deserialises anything.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import zipfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from app.core.errors import ModelLoadError, OutputError, UnsafeModelError
from app.core.labels import default_labels

logger = logging.getLogger(__name__)

MODEL_SUFFIXES: tuple[str, ...] = (".h5", ".hdf5", ".keras")
METADATA_KEY = "fer_studio"
METADATA_ENTRY = "fer_studio.json"

#: How pixels (0..255) are scaled before the model sees them.
NORMALISATIONS: tuple[str, ...] = ("minus1_1", "zero_1", "raw")

# Layer classes that carry arbitrary Python and would run it when deserialised.
_UNSAFE_CLASSES = {"Lambda", "__lambda__", "TFOpLambda", "SlicingOpLambda"}


@dataclass(frozen=True)
class ModelSpec:
    """What a model expects and predicts: everything needed to feed it a face crop and name its output."""

    labels: tuple[str, ...]
    input_size: tuple[int, int]  # (height, width)
    channels: int  # 1 (grey) or 3 (RGB)
    normalization: str = "minus1_1"
    arch: str | None = None
    #: Crop-trained models: faces are resized to this (height, width), then the centre ``input_size``
    #: window is the model's input (random windows in training, ten of them with crop test-time augmentation).
    crop_from: tuple[int, int] | None = None
    #: Softmax temperature fitted on the selection split (calibration); probabilities use logits / T.
    temperature: float = 1.0
    #: The test-time augmentation the model's reported accuracy used ("none", "flip", "crops").
    tta: str = "none"
    #: Training facts (data set fingerprint, epoch, metrics, command); free-form, JSON-serialisable.
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def to_json(self) -> str:
        data = asdict(self)
        data["labels"] = list(self.labels)
        data["input_size"] = list(self.input_size)
        data["crop_from"] = list(self.crop_from) if self.crop_from else None
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        return cls(
            labels=tuple(str(x) for x in data["labels"]),
            input_size=(int(data["input_size"][0]), int(data["input_size"][1])),
            channels=int(data["channels"]),
            normalization=str(data.get("normalization", "minus1_1")),
            arch=data.get("arch"),
            crop_from=(int(data["crop_from"][0]), int(data["crop_from"][1])) if data.get("crop_from") else None,
            temperature=float(data.get("temperature") or 1.0),
            tta=str(data.get("tta") or "none"),
            info=dict(data.get("info") or {}),
        )


@dataclass
class LoadedModel:
    """A Keras model ready for inference, with its spec and where it came from."""

    model: Any  # keras.Model; typed loosely so importing this module does not import Keras
    spec: ModelSpec
    path: Path | None
    #: Where the spec came from: "embedded", "sidecar", "inferred" (plus "+override" when arguments changed it).
    spec_source: str = "embedded"


def normalise_pixels(pixels: np.ndarray, normalization: str) -> np.ndarray:
    """Scale uint8-range pixels to what the model was trained on; returns float32."""
    x = pixels.astype(np.float32, copy=False)
    if normalization == "minus1_1":
        return x / 127.5 - 1.0
    if normalization == "zero_1":
        return x / 255.0
    if normalization == "raw":
        return x
    raise ValueError(f"unknown normalisation {normalization!r}; expected one of {NORMALISATIONS}")


# ---------------------------------------------------------------------------------------------- reading


def _read_container(path: Path) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Return (model config, embedded metadata) read as plain data, without building any layer."""
    if path.suffix.lower() == ".keras":
        try:
            with zipfile.ZipFile(path) as archive:
                names = set(archive.namelist())
                config = json.loads(archive.read("config.json")) if "config.json" in names else None
                meta = json.loads(archive.read(METADATA_ENTRY)) if METADATA_ENTRY in names else None
        except (zipfile.BadZipFile, OSError, ValueError, KeyError) as exc:
            raise ModelLoadError(f"{path}: not a readable .keras model archive ({exc}). "
                                 "The file may be truncated or corrupt; re-save or re-download it.") from exc
        return config, meta
    import h5py

    try:
        with h5py.File(path, "r") as h5:
            raw_config = h5.attrs.get("model_config")
            raw_meta = h5.attrs.get(METADATA_KEY)
            has_weights = "model_weights" in h5 or "layer_names" in h5.attrs
    except OSError as exc:
        raise ModelLoadError(f"{path}: not a readable HDF5 model ({exc}). "
                             "The file may be truncated or corrupt, or not a Keras model at all.") from exc
    if raw_config is None:
        hint = " It holds weights only; load it into the architecture it was saved from." if has_weights else ""
        raise ModelLoadError(f"{path}: this HDF5 file holds no Keras model config.{hint}")
    config = json.loads(_as_text(raw_config))
    meta = json.loads(_as_text(raw_meta)) if raw_meta is not None else None
    return config, meta


def _as_text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else str(value)


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def find_unsafe_layers(config: dict[str, Any] | None) -> list[str]:
    """Names of layers in a model config that embed Python code (Lambda layers and the like)."""
    found: list[str] = []
    for node in _walk(config):
        class_name = node.get("class_name")
        inner = node.get("config") if isinstance(node.get("config"), dict) else {}
        if class_name in _UNSAFE_CLASSES:
            found.append(f"{class_name} layer {inner.get('name', node.get('name', '?'))!r}")
        elif "function_type" in node or (class_name is None and "function" in node and "module" in node):
            found.append(f"embedded function in {node.get('name', '?')!r}")
    return found


def _read_sidecar(path: Path) -> dict[str, Any] | None:
    for candidate in (path.with_name(path.name + ".json"), path.with_suffix(".json")):
        if candidate.is_file():
            try:
                data = json.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ModelLoadError(f"{candidate}: sidecar JSON for {path.name} is not valid JSON ({exc}).") from exc
            if not isinstance(data, dict):
                raise ModelLoadError(f"{candidate}: sidecar JSON must be an object with 'labels' etc.")
            logger.info("using sidecar metadata %s", candidate)
            return data
    return None


def _spec_from_model(model: Any) -> ModelSpec:
    input_shape = model.input_shape
    if isinstance(input_shape, list):
        if len(input_shape) != 1:
            raise ModelLoadError(f"the model has {len(input_shape)} inputs; an emotion model takes one image.")
        input_shape = input_shape[0]
    output_shape = model.output_shape
    if isinstance(output_shape, list):
        if len(output_shape) != 1:
            raise ModelLoadError(f"the model has {len(output_shape)} outputs; an emotion model has one.")
        output_shape = output_shape[0]
    if len(input_shape) != 4 or input_shape[3] not in (1, 3) or not input_shape[1] or not input_shape[2]:
        raise ModelLoadError(
            f"the model's input is {tuple(input_shape)}; an emotion model takes images shaped "
            "(batch, height, width, 1 or 3). Is this an image classifier?")
    if len(output_shape) != 2 or not output_shape[1] or output_shape[1] < 2:
        raise ModelLoadError(
            f"the model's output is {tuple(output_shape)}; an emotion model outputs one score per class "
            "(batch, classes).")
    return ModelSpec(
        labels=default_labels(int(output_shape[1])),
        input_size=(int(input_shape[1]), int(input_shape[2])),
        channels=int(input_shape[3]),
        normalization="minus1_1",
    )


def load_model(
    path: str | os.PathLike[str],
    *,
    trust: bool = False,
    labels: Sequence[str] | None = None,
    normalization: str | None = None,
    compile: bool = False,
) -> LoadedModel:
    """Load a model file for inference (or, with ``compile=True``, for further training).

    Raises ModelLoadError (missing, corrupt, wrong shapes) or UnsafeModelError (embedded Python without
    ``trust``). ``labels`` and ``normalization`` override whatever the file or its sidecar says.
    """
    p = Path(path)
    if not p.exists():
        raise ModelLoadError(f"{p}: no such model file.")
    if not p.is_file():
        raise ModelLoadError(f"{p}: not a file; choose a .h5, .hdf5 or .keras model file.")
    if p.suffix.lower() not in MODEL_SUFFIXES:
        raise ModelLoadError(f"{p}: unsupported model type {p.suffix!r}; choose a .h5, .hdf5 or .keras file.")
    if p.stat().st_size == 0:
        raise ModelLoadError(f"{p}: the file is empty.")

    config, meta = _read_container(p)
    unsafe = find_unsafe_layers(config)
    if unsafe and not trust:
        raise UnsafeModelError(
            f"{p}: refused to load: the model embeds Python code ({', '.join(unsafe[:3])}), which would run "
            "on loading. Load it only if you trust where it came from (--trust-model / 'Trust this model').")

    import keras

    try:
        model = keras.models.load_model(p, compile=compile, safe_mode=not trust)
    except Exception as exc:  # Keras raises many types for bad files; all mean "cannot use this file"
        raise ModelLoadError(f"{p}: Keras could not load this model: {type(exc).__name__}: {exc}") from exc

    inferred = _spec_from_model(model)
    source = "inferred"
    spec = inferred
    if meta is not None:
        try:
            spec = ModelSpec.from_dict(meta)
            source = "embedded"
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            logger.warning("%s: ignoring malformed embedded metadata (%s)", p, exc)
    else:
        sidecar = _read_sidecar(p)
        if sidecar is not None:
            try:
                spec = replace(
                    inferred,
                    labels=tuple(str(x) for x in sidecar.get("labels", inferred.labels)),
                    normalization=str(sidecar.get("normalization", inferred.normalization)),
                    arch=sidecar.get("arch"),
                )
            except TypeError as exc:
                raise ModelLoadError(f"{p}: sidecar metadata is malformed ({exc}).") from exc
            source = "sidecar"
    # The model itself is the authority on shapes, whatever the metadata says.
    spec = replace(spec, input_size=inferred.input_size, channels=inferred.channels)
    if labels is not None or normalization is not None:
        spec = replace(spec, labels=tuple(labels) if labels is not None else spec.labels,
                       normalization=normalization or spec.normalization)
        source += "+override"
    if spec.normalization not in NORMALISATIONS:
        raise ModelLoadError(f"{p}: unknown normalisation {spec.normalization!r}; use one of {NORMALISATIONS}.")
    if len(spec.labels) != inferred.num_classes:
        raise ModelLoadError(
            f"{p}: {len(spec.labels)} labels given ({', '.join(spec.labels)}) but the model has "
            f"{inferred.num_classes} outputs.")
    if source == "inferred":
        logger.info("%s carries no FER Studio metadata; assuming labels %s and %s pixels",
                    p.name, ",".join(spec.labels), spec.normalization)
    return LoadedModel(model=model, spec=spec, path=p, spec_source=source)


# ---------------------------------------------------------------------------------------------- writing


def _temp_name(path: Path) -> Path:
    # Same folder (so the rename is atomic) and same suffix (Keras picks the format from it).
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")


def write_metadata(path: str | os.PathLike[str], spec: ModelSpec) -> None:
    """Embed ``spec`` in an existing model file (in place; used on a temporary file before renaming)."""
    p = Path(path)
    if p.suffix.lower() == ".keras":
        with zipfile.ZipFile(p, "a") as archive:
            archive.writestr(METADATA_ENTRY, spec.to_json())
        return
    import h5py

    with h5py.File(p, "a") as h5:
        h5.attrs[METADATA_KEY] = spec.to_json()


class _DropLegacyH5Warning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "considered legacy" not in record.getMessage()


@contextlib.contextmanager
def _quiet_legacy_h5_warning() -> Iterator[None]:
    """Keras warns on every .h5 save that the format is legacy; .h5 is a deliberate choice here."""
    absl_logger = logging.getLogger("absl")
    drop = _DropLegacyH5Warning()
    absl_logger.addFilter(drop)
    try:
        yield
    finally:
        absl_logger.removeFilter(drop)


def save_model(model: Any, path: str | os.PathLike[str], spec: ModelSpec) -> Path:
    """Save ``model`` with ``spec`` embedded, atomically: a temporary file in the same folder, then a rename.

    A crash or a full disk leaves the previous file at ``path`` untouched. An .h5/.hdf5 file is for inference
    and holds no optimizer state (Adam's would double or treble it); a .keras file (a run's last.keras, what
    ``--resume`` reloads) keeps it.
    """
    p = Path(path)
    if p.suffix.lower() not in MODEL_SUFFIXES:
        raise OutputError(f"{p}: a model file must end in .h5, .hdf5 or .keras.")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{p.parent}: cannot create the output folder ({exc}).") from exc
    tmp = _temp_name(p)
    try:
        with _quiet_legacy_h5_warning():
            if p.suffix.lower() == ".keras":
                model.save(tmp)
            else:
                model.save(tmp, include_optimizer=False)
        write_metadata(tmp, spec)
        os.replace(tmp, p)
    except OSError as exc:
        raise OutputError(f"{p}: could not save the model ({exc}).") from exc
    finally:
        if tmp.exists():
            tmp.unlink()
    return p


def update_metadata(path: str | os.PathLike[str], spec: ModelSpec) -> None:
    """Replace the embedded spec of an existing model file, atomically: a copy is edited, then renamed over
    the file, so a crash leaves the old file whole."""
    import shutil

    p = Path(path)
    tmp = _temp_name(p)
    try:
        shutil.copyfile(p, tmp)
        write_metadata(tmp, spec)
        os.replace(tmp, p)
    except OSError as exc:
        raise OutputError(f"{p}: could not update the model's metadata ({exc}).") from exc
    finally:
        if tmp.exists():
            tmp.unlink()


def read_spec(path: str | os.PathLike[str]) -> ModelSpec | None:
    """The embedded spec of a model file, read without loading the model (None if it has none)."""
    _, meta = _read_container(Path(path))
    return ModelSpec.from_dict(meta) if meta else None


def bundled_models_dir() -> Path:
    """The bundled models/ folder: the checkout's (next to app/), or the installed package's copy."""
    from app.core.package_data import bundled_dir

    return bundled_dir("models")


def bundled_models() -> list[Path]:
    """The models shipped in models/ (each with its card, models/<name>.md), default first."""
    folder = bundled_models_dir()
    if not folder.is_dir():
        return []
    found = sorted(p for p in folder.iterdir() if p.suffix.lower() in MODEL_SUFFIXES and p.is_file())
    default = default_model_path()
    return sorted(found, key=lambda p: p != default)


def default_model_path() -> Path | None:
    """The bundled default model, or None when none is shipped (then --model is required)."""
    folder = bundled_models_dir()
    marker = folder / "DEFAULT"
    if marker.is_file():
        candidate = folder / marker.read_text(encoding="utf-8").strip()
        if candidate.is_file():
            return candidate
    return None
