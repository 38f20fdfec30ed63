"""The training dialog's data set summary: counts per split from real FER2013 rows, read line by line."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from app.core import dataset_summary, datasets
from app.core.dataset_summary import describe_dataset
from app.core.errors import DatasetError
from app.core.labels import FER2013_LABELS


def _expected_counts(path: Path) -> dict[str, list[int]]:
    counts: dict[str, list[int]] = {}
    with gzip.open(path, "rt") as handle:
        next(handle)
        for line in handle:
            emotion, _, usage = line.strip().split(",")
            counts.setdefault(usage, [0] * 7)[int(emotion)] += 1
    return counts


def test_fer2013_counts_per_split(fer_sample: Path) -> None:
    summary = describe_dataset(fer_sample)
    assert summary.kind == "fer2013" and summary.labels == FER2013_LABELS
    assert summary.counts == _expected_counts(fer_sample)


def test_the_csv_is_streamed_never_read_whole(fer_sample: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The 290 MB CSV must not become one string in the GUI process: no read() of the whole file."""
    real_open = datasets.open_text

    class NoWholeRead:
        def __init__(self, handle):  # type: ignore[no-untyped-def]
            self.handle = handle

        def read(self, *args):  # type: ignore[no-untyped-def]
            raise AssertionError("the whole file was read into memory")

        def __getattr__(self, name):  # type: ignore[no-untyped-def]
            return getattr(self.handle, name)

        def __iter__(self):  # type: ignore[no-untyped-def]
            return iter(self.handle)

        def __enter__(self):  # type: ignore[no-untyped-def]
            return self

        def __exit__(self, *exc):  # type: ignore[no-untyped-def]
            self.handle.close()

    def guarded(path: Path) -> NoWholeRead:
        return NoWholeRead(real_open(path))

    monkeypatch.setattr(datasets, "open_text", guarded)
    monkeypatch.setattr(dataset_summary, "open_text", guarded)
    assert describe_dataset(fer_sample).counts == _expected_counts(fer_sample)


def test_other_column_order_and_bad_rows(tmp_path: Path, fer_sample: Path) -> None:
    with gzip.open(fer_sample, "rt") as handle:
        rows = [line.strip().split(",") for line in handle][1:6]
    reordered = tmp_path / "reordered.csv"
    reordered.write_text("Usage,pixels,emotion\n" + "".join(f"{u},{p},{e}\n" for e, p, u in rows))
    counts = describe_dataset(reordered).counts
    assert sum(sum(v) for v in counts.values()) == 5
    bad = tmp_path / "bad.csv"
    bad.write_text("emotion,pixels,Usage\n3,1 2 3,Training\n9,1 2 3,Training\n")
    with pytest.raises(DatasetError, match="line 3: malformed row"):
        describe_dataset(bad)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DatasetError, match="empty"):
        describe_dataset(empty)
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("a,b\n1,2\n")
    with pytest.raises(DatasetError, match="missing emotion"):
        describe_dataset(wrong)
    truncated = tmp_path / "cut.csv.gz"
    truncated.write_bytes(fer_sample.read_bytes()[:2000])
    with pytest.raises(DatasetError, match="cannot read the CSV"):
        describe_dataset(truncated)
