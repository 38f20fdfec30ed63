"""``fer-studio preprocess RAW_DIR OUT_DIR``: crop the faces of raw photos into a folder-per-class set.

RAW_DIR has one sub-folder of photos per class. Every face becomes a sample (``OUT_DIR/<class>/...png``)
listed in ``OUT_DIR/description.csv``; photos with no face and unreadable files are reported and skipped.
RAW_DIR is never written to, and a non-empty OUT_DIR is refused.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

_MAX_LISTED = 20


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("raw_dir", help="folder with one sub-folder of photos per class")
    parser.add_argument("out_dir", help="new or empty folder for the face crops")
    parser.add_argument("--size", type=int, default=48,
                        help="side of the square crops in pixels (default 48)")
    parser.add_argument("--detector", default="hog", choices=("hog", "haar", "cnn"),
                        help="face detector (default hog, face_recognition's)")
    colour = parser.add_mutually_exclusive_group()
    colour.add_argument("--grey", "--gray", dest="grey", action="store_true", default=True,
                        help="write grey crops, like FER2013 (default)")
    colour.add_argument("--color", "--colour", dest="grey", action="store_false", help="write colour crops")
    parser.add_argument("--margin", type=float, default=0.2,
                        help="widen the face box by this fraction on each side (default 0.2)")
    parser.add_argument("--align", action="store_true", help="rotate each face so the eyes are level")


def _show(title: str, items: list[str]) -> None:
    print(title, file=sys.stderr)
    for item in items[:_MAX_LISTED]:
        print(f"  {item}", file=sys.stderr)
    if len(items) > _MAX_LISTED:
        print(f"  ... and {len(items) - _MAX_LISTED} more (all listed in problems.csv)", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from app.core.preprocessing import DESCRIPTION_NAME, PROBLEMS_NAME, preprocess_folder

    result = preprocess_folder(Path(args.raw_dir), Path(args.out_dir), size=args.size, detector=args.detector,
                               grey=args.grey, margin=args.margin, align=args.align)
    faces = result.faces_per_class()
    width = max(len(label) for label in faces)
    photos = sum(result.photos.values())
    print(f"{photos} photo(s) in {len(faces)} class(es) -> {len(result.samples)} face crop(s) "
          f"({args.size}x{args.size}, {'grey' if args.grey else 'colour'}, {args.detector} detector)")
    for label, count in faces.items():
        print(f"  {label:<{width}}  {result.photos[label]:5d} photo(s)  {count:5d} face(s)")
    if result.no_face:
        _show(f"no face found in {len(result.no_face)} photo(s):", [str(p) for p in result.no_face])
    if result.unreadable:
        _show(f"skipped {len(result.unreadable)} unreadable file(s):", [msg for _, msg in result.unreadable])
    if result.empty_classes:
        _show("class folders without photos (no class made):", result.empty_classes)
    if result.ignored:
        _show(f"ignored {len(result.ignored)} file(s) that are not photos in a class folder:",
              [str(p) for p in result.ignored])
    print(f"wrote {result.out_dir / DESCRIPTION_NAME}")
    if result.no_face or result.unreadable:
        print(f"wrote {result.out_dir / PROBLEMS_NAME}")
    return 0
