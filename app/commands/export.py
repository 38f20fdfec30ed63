"""``fer-studio export MODEL OUT``: re-save a model with FER Studio metadata embedded (.h5/.hdf5/.keras).

Typical use: a published Keras-2 mini_XCEPTION file that carries no labels or normalisation. Loading it
here (with ``--labels`` / ``--normalization`` where the defaults are wrong) and exporting it gives a file
that every part of the program reads without guessing. The write is atomic and never replaces the input.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace
from pathlib import Path

from app.core.errors import OutputError
from app.core.labels import parse_labels
from app.core.model_io import MODEL_SUFFIXES, NORMALISATIONS, load_model, read_spec, save_model

logger = logging.getLogger(__name__)


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model file to read (.h5, .hdf5 or .keras)")
    parser.add_argument("out", help="file to write (.h5, .hdf5 or .keras); must differ from MODEL")
    parser.add_argument("--labels", help="comma-separated class names in output order, or 'fer2013'")
    parser.add_argument("--normalization", choices=NORMALISATIONS,
                        help="pixel scaling the model was trained with (default: the file's, else minus1_1)")
    parser.add_argument("--arch", help="architecture name to record in the metadata")
    parser.add_argument("--trust-model", action="store_true",
                        help="load a model that embeds Python code (Lambda layers); only for trusted files")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists (never MODEL itself)")


def run(args: argparse.Namespace) -> int:
    src = Path(args.model)
    out = Path(args.out)
    if out.suffix.lower() not in MODEL_SUFFIXES:
        raise OutputError(f"{out}: the output must end in .h5, .hdf5 or .keras.")
    if out.exists():
        if src.exists() and out.resolve() == src.resolve():
            raise OutputError(f"{out}: refusing to overwrite the input model; choose another output name.")
        if not args.force:
            raise OutputError(f"{out}: already exists; choose another name or pass --force to replace it.")
    elif out.resolve() == src.resolve():  # pragma: no cover - src missing is reported by load_model below
        raise OutputError(f"{out}: refusing to overwrite the input model; choose another output name.")

    loaded = load_model(src, trust=args.trust_model, labels=parse_labels(args.labels),
                        normalization=args.normalization)
    info = dict(loaded.spec.info)
    info.setdefault("exported_from", src.name)
    spec = replace(loaded.spec, arch=args.arch or loaded.spec.arch, info=info)
    save_model(loaded.model, out, spec)
    written = read_spec(out)
    if written is None or written.labels != spec.labels:  # pragma: no cover - save_model embeds it
        raise OutputError(f"{out}: the metadata did not round-trip; the file may be unusable.")

    print(f"wrote {out}")
    print(f"  labels:        {', '.join(spec.labels)}")
    window = f" (a window of a {spec.crop_from[0]}x{spec.crop_from[1]} face)" if spec.crop_from else ""
    print(f"  input:         {spec.input_size[0]}x{spec.input_size[1]}x{spec.channels}{window}")
    print(f"  normalization: {spec.normalization}")
    print(f"  arch:          {spec.arch or '-'}")
    print(f"  metadata from: {loaded.spec_source}")
    return 0
