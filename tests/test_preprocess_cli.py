"""``fer-studio preprocess`` on real photos: a two-face photo, a one-face photo, a photo with no face, a
corrupt file; the crops, description.csv, the problems reported, and the refusals that protect data."""

from __future__ import annotations

import csv
import shutil

import cv2
import numpy as np
import pytest

from app.cli import main

pytest.importorskip("face_recognition", reason="the default (hog) detector needs face_recognition")


@pytest.fixture
def raw_dir(data_dir, tmp_path):
    raw = tmp_path / "RAW"
    (raw / "happy").mkdir(parents=True)
    (raw / "neutral").mkdir()
    shutil.copy(data_dir / "two_people.jpg", raw / "happy" / "two_people.jpg")
    shutil.copy(data_dir / "justin.jpg", raw / "neutral" / "justin.jpg")
    # A real photo with no face in it: the bottom of two_people.jpg, below both faces.
    photo = cv2.imread(str(data_dir / "two_people.jpg"))
    cv2.imwrite(str(raw / "neutral" / "street.jpg"), photo[400:])
    # A corrupt file: a JPEG cut off after its first kilobyte.
    (raw / "happy" / "broken.jpg").write_bytes((data_dir / "justin.jpg").read_bytes()[:1024])
    (raw / "notes.txt").write_text("not a class folder")
    return raw


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_preprocess_crops_every_face_and_reports_problems(raw_dir, tmp_path, capsys):
    before = _snapshot(raw_dir)
    out = tmp_path / "OUT"
    assert main(["preprocess", str(raw_dir), str(out)]) == 0
    captured = capsys.readouterr()

    crops = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert crops == ["happy/two_people_0.png", "happy/two_people_1.png", "neutral/justin_0.png"]
    for crop in crops:
        image = cv2.imread(str(out / crop), cv2.IMREAD_UNCHANGED)
        assert image.shape == (48, 48) and image.dtype == np.uint8 and image.std() > 10

    with open(out / "description.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["path"], r["label"]) for r in rows] == [
        ("happy/two_people_0.png", "happy"), ("happy/two_people_1.png", "happy"),
        ("neutral/justin_0.png", "neutral")]

    assert "3 face crop(s)" in captured.out
    assert "no face found in 1 photo(s)" in captured.err and "street.jpg" in captured.err
    assert "skipped 1 unreadable file(s)" in captured.err and "broken.jpg" in captured.err
    assert "notes.txt" in captured.err
    problems = (out / "problems.csv").read_text()
    assert "street.jpg" in problems and "broken.jpg" in problems

    assert _snapshot(raw_dir) == before  # the raw folder is untouched
    assert not list(tmp_path.glob(".OUT.partial*"))


def test_preprocess_colour_size_and_margin(raw_dir, tmp_path, capsys):
    out = tmp_path / "colour"
    assert main(["preprocess", str(raw_dir), str(out), "--color", "--size", "64", "--margin", "0"]) == 0
    image = cv2.imread(str(out / "neutral" / "justin_0.png"), cv2.IMREAD_UNCHANGED)
    assert image.shape == (64, 64, 3)


def test_preprocess_the_output_loads_as_a_folder_data_set(raw_dir, tmp_path, capsys):
    from app.core.datasets import load_split

    out = tmp_path / "set"
    assert main(["preprocess", str(raw_dir), str(out)]) == 0
    x, y, names = load_split(out, "all", (48, 48), 1)
    assert names == ("happy", "neutral") and x.shape == (3, 48, 48, 1) and y.tolist() == [0, 0, 1]


def test_preprocess_refuses_non_empty_or_nested_output(raw_dir, tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    assert main(["preprocess", str(raw_dir), str(taken)]) == 1
    assert "is not empty" in capsys.readouterr().err
    assert [p.name for p in taken.iterdir()] == ["keep.txt"]

    before = _snapshot(raw_dir)
    assert main(["preprocess", str(raw_dir), str(raw_dir / "crops")]) == 1
    assert "inside the raw photo folder" in capsys.readouterr().err
    assert main(["preprocess", str(raw_dir), str(raw_dir)]) == 1
    capsys.readouterr()
    assert _snapshot(raw_dir) == before and not (raw_dir / "crops").exists()


def test_preprocess_bad_input_is_one_clean_line(tmp_path, capsys):
    assert main(["preprocess", str(tmp_path / "missing"), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "not a folder" in err and "Traceback" not in err

    empty = tmp_path / "empty"
    (empty / "happy").mkdir(parents=True)
    assert main(["preprocess", str(empty), str(tmp_path / "out")]) == 1
    assert "no class sub-folders with photos" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_preprocess_no_face_anywhere_writes_nothing(data_dir, tmp_path, capsys):
    raw = tmp_path / "raw"
    (raw / "sad").mkdir(parents=True)
    cv2.imwrite(str(raw / "sad" / "street.jpg"), cv2.imread(str(data_dir / "two_people.jpg"))[400:])
    assert main(["preprocess", str(raw), str(tmp_path / "out")]) == 1
    assert "no face found in any" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.partial*"))
