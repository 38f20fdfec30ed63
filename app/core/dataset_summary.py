"""A data set's classes and image counts per split, cheap enough for the training dialog's chart.

A folder set is only listed; a FER2013 CSV (290 MB as plain text) is read line by line and each row only
split at its first and last comma, never decoded: the summary holds counts, never the file.
"""

from __future__ import annotations

import csv
import gzip
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from app.core.datasets import FER2013_COLUMNS, FER2013_SPLITS, folder_layout, is_fer2013_csv, open_text
from app.core.errors import DatasetError
from app.core.labels import FER2013_LABELS

logger = logging.getLogger(__name__)


@dataclass
class DatasetSummary:
    """Class counts per split, cheap to compute (for the training dialog's chart)."""

    labels: tuple[str, ...]
    counts: dict[str, list[int]]
    kind: str


def describe_dataset(path: str | os.PathLike[str]) -> DatasetSummary:
    """Class counts per split without decoding any image (FER2013 rows are only split, not parsed)."""
    p = Path(path)
    if p.is_dir():
        layout = folder_layout(p)
        base = layout.get("train", layout.get("all", {}))
        labels = tuple(sorted(base))
        counts = {split: [len(classes.get(name, [])) for name in labels] for split, classes in layout.items()}
        return DatasetSummary(labels=labels, counts=counts, kind="folder")
    if not is_fer2013_csv(p):
        raise DatasetError(f"{p}: choose a FER2013 .csv/.csv.gz file or a folder with one sub-folder per class.")
    return DatasetSummary(labels=FER2013_LABELS, counts=_count_fer_rows(p), kind="fer2013")


def _count_fer_rows(path: Path) -> dict[str, list[int]]:
    """Class counts per split of a FER2013 CSV, read line by line (the 290 MB file is never held whole)."""
    if not path.is_file():
        raise DatasetError(f"{path}: no such file.")
    counts = {name: [0] * len(FER2013_LABELS) for name in FER2013_SPLITS}
    rows = 0
    try:
        with open_text(path) as handle:
            first = handle.readline()
            if not first.strip():
                raise DatasetError(f"{path}: the file is empty.")
            header = [h.strip() for h in next(csv.reader([first]))]
            missing = [c for c in FER2013_COLUMNS if c not in header]
            if missing:
                raise DatasetError(
                    f"{path}: expected FER2013 columns {','.join(FER2013_COLUMNS)}, found "
                    f"{','.join(header) or 'none'} (missing {', '.join(missing)}).")
            emotion_at, usage_at = header.index("emotion"), header.index("Usage")
            standard = tuple(header[:3]) == FER2013_COLUMNS
            for number, line in enumerate(handle, start=2):
                if not line.strip():
                    continue
                if standard:  # the pixels column has no commas: split at the first and the last one
                    first_comma, last_comma = line.find(","), line.rfind(",")
                    emotion, usage = line[:first_comma].strip(), line[last_comma + 1:].strip()
                else:
                    fields = next(csv.reader([line]))
                    emotion = fields[emotion_at].strip() if len(fields) > emotion_at else ""
                    usage = fields[usage_at].strip() if len(fields) > usage_at else ""
                if usage not in counts or not emotion.isdigit() or int(emotion) >= len(FER2013_LABELS):
                    raise DatasetError(f"{path}, line {number}: malformed row (emotion {emotion!r}, "
                                       f"Usage {usage!r}).")
                counts[usage][int(emotion)] += 1
                rows += 1
    except (OSError, EOFError, UnicodeDecodeError, gzip.BadGzipFile) as exc:
        raise DatasetError(f"{path}: cannot read the CSV ({exc}). Is the file complete and a (gzipped) CSV?") from exc
    if not rows:
        raise DatasetError(f"{path}: the CSV has a header but no rows.")
    return {k: v for k, v in counts.items() if sum(v)}
