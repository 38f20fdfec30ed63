"""``fer-studio predict PATH...``: label every face in photos (a folder means every image in it).

Plain output is a table per image; ``--json`` prints exactly one JSON object per image per line. A bad
file never stops the batch: it gets one line naming the file and the problem (``"error"`` in JSON), and
the exit code is 1 when anything failed. ``--annotate DIR`` writes annotated copies atomically, never
over an input file (``<name>_annotated.<ext>``, numbered when taken); with --json each object then also
carries ``"annotated": PATH``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, TextIO

from app.commands.detection_options import (
    add_detection_arguments,
    add_tta_argument,
    add_uncertainty_argument,
    detection_kwargs,
)
from app.core.errors import FerStudioError, ModelLoadError, OutputError
from app.core.files import atomic_write_bytes
from app.core.labels import parse_labels

logger = logging.getLogger(__name__)

_WRITABLE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def add_parser(parser: argparse.ArgumentParser) -> None:
    from app.core.model_io import NORMALISATIONS

    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders of images")
    parser.add_argument("--model", help="model file (.h5, .hdf5 or .keras); default: the bundled model")
    add_detection_arguments(parser)
    add_tta_argument(parser, model_default=True)
    add_uncertainty_argument(parser)
    parser.add_argument("--json", action="store_true", help="one JSON object per image per line")
    parser.add_argument("--annotate", metavar="DIR", help="write annotated copies of the photos into DIR")
    parser.add_argument("--trust-model", action="store_true",
                        help="load a model that embeds Python code (Lambda layers); only for trusted files")
    parser.add_argument("--labels", help="comma-separated class names in the model's output order")
    parser.add_argument("--normalization", choices=NORMALISATIONS,
                        help="pixel scaling the model expects (default: the file's, else minus1_1)")


def run(args: argparse.Namespace) -> int:
    from app.core.images import list_images
    from app.core.model_io import default_model_path
    from app.core.recognition.pipeline import build_pipeline

    model = args.model or default_model_path()
    if model is None:
        raise ModelLoadError("a model is required: no bundled default model was found in models/, so pass --model FILE "
                             "(a .h5, .hdf5 or .keras emotion model, e.g. one made by 'fer-studio train').")
    out_dir = _prepare_out_dir(args.annotate) if args.annotate else None
    pipeline = build_pipeline(model, **detection_kwargs(args), tta=args.tta, trust=args.trust_model,
                              uncertain_below=args.uncertain_below,
                              labels=parse_labels(args.labels), normalization=args.normalization)

    jobs: list[tuple[str, Path | None, str | None]] = []  # (name shown, file, problem)
    for given in args.paths:
        path = Path(given)
        if path.is_dir():
            found = list_images([path])
            if not found:
                jobs.append((given, None, f"{given}: no image files in this folder."))
            jobs.extend((str(f), f, None) for f in found)
        else:
            jobs.append((given, path, None))

    inputs = {_resolved(f) for _, f, _ in jobs if f is not None}
    used_names: set[str] = set()
    failures = 0
    for name, file, problem in jobs:
        record: dict[str, Any] = {"file": name, "faces": [], "error": problem}
        if problem is None and file is not None:
            try:
                record.update(_predict_one(pipeline, file, out_dir, inputs, used_names))
            except FerStudioError as exc:
                record["error"] = str(exc)
            except Exception as exc:
                logger.debug("unexpected error on %s", file, exc_info=True)
                record["error"] = f"{file}: unexpected {type(exc).__name__}: {exc}"
        if record["error"]:
            failures += 1
        _emit(record, args.json, sys.stdout, sys.stderr)
    return 1 if failures else 0


def _predict_one(pipeline: Any, file: Path, out_dir: Path | None, inputs: set[str],
                 used_names: set[str]) -> dict[str, Any]:
    from app.core.images import read_image

    image = read_image(file)
    result = pipeline.process(image)
    faces = [{
        "box": [int(v) for v in face.box],
        "label": face.label,
        "score": round(float(face.score), 6),
        "probabilities": {k: round(float(v), 6) for k, v in face.probabilities.items()},
        "uncertain": bool(face.uncertain),
    } for face in result.faces]
    record: dict[str, Any] = {"faces": faces}
    if out_dir is not None:
        from app.core.recognition.annotate import draw_faces

        target = _unique_target(out_dir, file, inputs, used_names)
        _write_image_atomic(target, draw_faces(image, result.faces))
        record["annotated"] = str(target)
    return record


def _emit(record: dict[str, Any], as_json: bool, out: TextIO, err: TextIO) -> None:
    if as_json:
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        out.flush()
        return
    if record["error"]:
        err.write(f"fer-studio predict: error: {record['error']}\n")
        err.flush()
        return
    faces = record["faces"]
    out.write(f"{record['file']}: {len(faces)} face{'s' if len(faces) != 1 else ''}\n")
    if faces:
        out.write(f"  {'#':>2}  {'box (x, y, w, h)':<24} {'label':<10} {'score':>5}  others\n")
        for i, face in enumerate(faces, 1):
            box = ", ".join(str(v) for v in face["box"])
            ranked = sorted(face["probabilities"].items(), key=lambda kv: kv[1], reverse=True)[1:3]
            others = ", ".join(f"{k} {v:.2f}" for k, v in ranked)
            flag = "  (uncertain)" if face.get("uncertain") else ""
            out.write(f"  {i:>2}  {box:<24} {face['label']:<10} {face['score']:>5.2f}  {others}{flag}\n")
    if "annotated" in record:
        out.write(f"  annotated: {record['annotated']}\n")
    out.flush()


# ---------------------------------------------------------------------------------------------- output files


def _resolved(path: Path) -> str:
    try:
        return str(path.resolve())
    except OSError:
        return str(path.absolute())


def _prepare_out_dir(text: str) -> Path:
    folder = Path(text)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"--annotate {folder}: exists and is not a folder.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"--annotate {folder}: cannot create the folder ({exc.strerror or exc}).") from exc
    return folder


def _unique_target(out_dir: Path, source: Path, inputs: set[str], used: set[str]) -> Path:
    """``DIR/<stem>_annotated<ext>``, numbered when taken in this run or when it would hit an input."""
    suffix = source.suffix.lower() if source.suffix.lower() in _WRITABLE_SUFFIXES else ".png"
    stem = source.stem
    candidate = out_dir / f"{stem}_annotated{suffix}"
    n = 1
    while _resolved(candidate) in used or _resolved(candidate) in inputs:
        n += 1
        candidate = out_dir / f"{stem}_annotated-{n}{suffix}"
    used.add(_resolved(candidate))
    return candidate


def _write_image_atomic(target: Path, image: Any) -> None:
    """Encode in memory, write to a temporary name beside ``target``, then rename over it."""
    import cv2

    ok, encoded = cv2.imencode(target.suffix, image)
    if not ok:
        raise OutputError(f"{target}: cannot encode the annotated image as {target.suffix}.")
    atomic_write_bytes(target, encoded.tobytes(), "the annotated image")
