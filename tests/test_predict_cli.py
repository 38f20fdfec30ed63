"""``fer-studio predict``: JSON and table output, bad files in a batch, --annotate, model errors."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from app import cli
from app.core import model_io


def _predict(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["predict", *args])
    out, err = capsys.readouterr()
    return code, out, err


def _json_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def bad_files(tmp_path: Path, data_dir: Path) -> dict[str, Path]:
    """One of every kind of unusable file, plus unusual but valid ones, all in tmp_path."""
    folder = tmp_path / "in"
    folder.mkdir()
    files = {"missing": folder / "missing.jpg", "empty": folder / "empty.jpg",
             "truncated": folder / "cut.jpg", "text": folder / "notes.jpg"}
    files["empty"].write_bytes(b"")
    data = (data_dir / "justin.jpg").read_bytes()
    files["truncated"].write_bytes(data[: len(data) // 2])
    files["text"].write_text("not an image", encoding="utf-8")
    return files


def test_json_one_object_per_image(capsys, tiny_model_path: Path, data_dir: Path) -> None:
    code, out, _ = _predict(capsys, str(data_dir / "two_people.jpg"), str(data_dir / "justin.jpg"),
                            "--model", str(tiny_model_path), "--json")
    assert code == 0
    records = _json_lines(out)
    assert [Path(r["file"]).name for r in records] == ["two_people.jpg", "justin.jpg"]
    assert [len(r["faces"]) for r in records] == [2, 1]
    for record in records:
        assert set(record) == {"file", "faces", "error"} and record["error"] is None
        for face in record["faces"]:
            assert set(face) == {"box", "label", "score", "probabilities", "uncertain"}
            assert face["uncertain"] == (face["score"] < 0.4)
            assert len(face["box"]) == 4 and all(isinstance(v, int) for v in face["box"])
            assert list(face["probabilities"]) == ["angry", "disgust", "fear", "happy", "sad", "surprise",
                                                   "neutral"]
            assert face["score"] == max(face["probabilities"].values())
            assert face["label"] == max(face["probabilities"], key=face["probabilities"].get)


def test_bad_files_never_stop_the_batch(capsys, tiny_model_path: Path, data_dir: Path,
                                        bad_files: dict[str, Path]) -> None:
    paths = [str(p) for p in bad_files.values()] + [str(data_dir / "justin.jpg")]
    code, out, _ = _predict(capsys, *paths, "--model", str(tiny_model_path), "--json")
    assert code == 1
    records = _json_lines(out)
    assert len(records) == 5
    by_name = {Path(r["file"]).name: r for r in records}
    assert "no such file" in by_name["missing.jpg"]["error"]
    assert "empty" in by_name["empty.jpg"]["error"]
    assert "truncated" in by_name["cut.jpg"]["error"]
    assert "not an image" in by_name["notes.jpg"]["error"]
    for name in ("missing.jpg", "empty.jpg", "cut.jpg", "notes.jpg"):
        assert name in by_name[name]["error"] and by_name[name]["faces"] == []
    assert by_name["justin.jpg"]["error"] is None and len(by_name["justin.jpg"]["faces"]) == 1


def test_table_output_and_one_line_per_problem(capsys, tiny_model_path: Path, data_dir: Path,
                                               bad_files: dict[str, Path]) -> None:
    code, out, err = _predict(capsys, str(data_dir / "two_people.jpg"), str(bad_files["text"]),
                              "--model", str(tiny_model_path))
    assert code == 1
    assert "two_people.jpg: 2 faces" in out and "box (x, y, w, h)" in out
    problems = [line for line in err.splitlines() if "notes.jpg" in line]
    assert len(problems) == 1 and "not an image" in problems[0]


def test_unusual_but_valid_images(capsys, tmp_path: Path, tiny_model_path: Path, data_dir: Path) -> None:
    from PIL import Image

    face = cv2.imread(str(data_dir / "justin.jpg"))
    folder = tmp_path / "odd"
    folder.mkdir()
    cv2.imwrite(str(folder / "deep16.png"), face.astype(np.uint16) * 257)
    cv2.imwrite(str(folder / "alpha.png"), cv2.cvtColor(face, cv2.COLOR_BGR2BGRA))
    cv2.imwrite(str(folder / "grey.png"), cv2.cvtColor(face, cv2.COLOR_BGR2GRAY))
    exif = Image.Exif()
    exif[0x0112] = 8  # stored sideways; shown upright only if the orientation is applied
    Image.fromarray(np.ascontiguousarray(np.rot90(face[:, :, ::-1], k=-1))).save(folder / "exif.jpg", exif=exif)
    shutil.copyfile(data_dir / "justin.jpg", folder / "фото_情绪.jpg")
    code, out, _ = _predict(capsys, str(folder), "--model", str(tiny_model_path), "--json")
    assert code == 0
    records = _json_lines(out)
    assert sorted(Path(r["file"]).name for r in records) == sorted(
        ["deep16.png", "alpha.png", "grey.png", "exif.jpg", "фото_情绪.jpg"])
    for record in records:
        assert record["error"] is None and len(record["faces"]) == 1, record


def test_annotate_writes_copies_and_never_overwrites(capsys, tmp_path: Path, tiny_model_path: Path,
                                                     data_dir: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    for folder in (one, two):
        folder.mkdir()
        shutil.copyfile(data_dir / "two_people.jpg", folder / "photo.jpg")
    # An input that is already named like an annotated output, in the output folder itself.
    shutil.copyfile(data_dir / "justin.jpg", one / "photo_annotated.jpg")
    before = {p: _digest(p) for p in one.iterdir()} | {p: _digest(p) for p in two.iterdir()}
    code, out, _ = _predict(capsys, str(one / "photo.jpg"), str(two / "photo.jpg"), str(one / "photo_annotated.jpg"),
                            "--model", str(tiny_model_path), "--annotate", str(one), "--json")
    assert code == 0
    assert {p: _digest(p) for p in before} == before  # no input changed
    written = [Path(r["annotated"]) for r in _json_lines(out)]
    assert len(set(written)) == 3 and not set(written) & set(before)
    for path in written:
        assert path.parent == one
        image = cv2.imread(str(path))
        assert image is not None and image.shape[0] > 300
    annotated = cv2.imread(str(written[0]))
    assert not np.array_equal(annotated, cv2.imread(str(one / "photo.jpg")))  # something was drawn
    assert not [p for p in one.iterdir() if ".tmp" in p.name]


def test_model_required(capsys, monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    monkeypatch.setattr(model_io, "default_model_path", lambda: None)
    code, _, err = _predict(capsys, str(data_dir / "justin.jpg"))
    assert code == 1
    assert "a model is required" in err and "--model" in err
    assert len(err.strip().splitlines()) == 1


def test_bad_model_is_one_clean_line(capsys, tmp_path: Path, tiny_model_path: Path, data_dir: Path) -> None:
    broken = tmp_path / "broken.h5"
    broken.write_bytes(tiny_model_path.read_bytes()[:3000])
    code, _, err = _predict(capsys, str(data_dir / "justin.jpg"), "--model", str(broken))
    assert code == 1 and "broken.h5" in err and "Traceback" not in err
    code, _, err = _predict(capsys, str(data_dir / "justin.jpg"), "--model", str(tiny_model_path),
                            "--labels", "a,b,c")
    assert code == 1 and "3 labels given" in err


def test_empty_folder_is_reported(capsys, tmp_path: Path, tiny_model_path: Path) -> None:
    code, out, _ = _predict(capsys, str(tmp_path), "--model", str(tiny_model_path), "--json")
    assert code == 1
    (record,) = _json_lines(out)
    assert "no image files" in record["error"]


def test_console_entry_point_exit_codes(tmp_path: Path, tiny_model_path: Path, data_dir: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_text("nope", encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    command = [sys.executable, "-m", "app.cli", "predict", "--model", str(tiny_model_path), "--json"]
    done = subprocess.run(command + [str(data_dir / "justin.jpg"), str(bad)], capture_output=True, text=True,
                          env=env, timeout=300, check=False)
    assert done.returncode == 1, done.stderr
    records = _json_lines(done.stdout)
    assert [r["error"] is None for r in records] == [True, False]
    done = subprocess.run(command + [str(data_dir / "justin.jpg")], capture_output=True, text=True, env=env,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr


def test_uncertain_below_and_crop_tta_options(data_dir, capsys):
    photo = str(data_dir / "two_people.jpg")
    assert cli.main(["predict", photo, "--json", "--uncertain-below", "0.999"]) == 0
    faces = json.loads(capsys.readouterr().out)["faces"]
    assert faces and all(face["uncertain"] and face["label"] and len(face["probabilities"]) == 7 for face in faces)
    assert cli.main(["predict", photo, "--json", "--uncertain-below", "0", "--tta", "crops"]) == 0
    crops = json.loads(capsys.readouterr().out)["faces"]
    assert not any(face["uncertain"] for face in crops)
    assert [face["box"] for face in crops] == [face["box"] for face in faces]
    assert any(abs(a["score"] - b["score"]) > 1e-4 for a, b in zip(crops, faces))  # other views, other numbers
    with pytest.raises(SystemExit):
        cli.main(["predict", photo, "--uncertain-below", "1.5"])
