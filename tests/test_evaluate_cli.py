"""``fer-studio evaluate`` on real FER2013 rows: the CSV's PrivateTest split, and a folder set built from
them."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from app.cli import main
from app.core.datasets import load_fer2013
from app.core.evaluation import evaluate_predictions, predict_array
from app.core.labels import FER2013_LABELS
from app.core.model_io import load_model


@pytest.fixture
def model_copy(tiny_model_path, tmp_path):
    """The tiny model in its own folder, so the default report folder lands in tmp_path."""
    path = tmp_path / "models" / "tiny.h5"
    path.parent.mkdir()
    shutil.copy(tiny_model_path, path)
    return path


def _run_json(argv, capsys):
    rc = main([*argv, "--json"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    return json.loads(captured.out), captured.err


def test_evaluate_fer2013_private_test(model_copy, fer_sample, capsys):
    before = model_copy.read_bytes()
    report, _ = _run_json(["evaluate", str(model_copy), str(fer_sample)], capsys)
    private = load_fer2013(fer_sample, splits=["PrivateTest"])["PrivateTest"]

    assert 0.0 <= report["accuracy"] <= 1.0 and 0.0 <= report["macro_f1"] <= 1.0
    assert report["num_samples"] == len(private)
    assert report["meta"]["split"] == "PrivateTest"
    assert report["labels"] == list(FER2013_LABELS)
    assert np.array(report["confusion_matrix"]).sum(axis=1).tolist() == private.counts(7)

    # Same numbers as scoring the arrays directly.
    loaded = load_model(model_copy)
    direct = evaluate_predictions(private.labels, predict_array(loaded, private.images), FER2013_LABELS)
    assert report["accuracy"] == pytest.approx(direct.accuracy)
    assert report["macro_f1"] == pytest.approx(direct.macro_f1)

    out_dir = model_copy.parent / "tiny_eval_fer2013_sample_PrivateTest"
    written = json.loads((out_dir / "evaluation.json").read_text())
    assert written["accuracy"] == pytest.approx(report["accuracy"])
    assert cv2.imread(str(out_dir / "evaluation_confusion.png")) is not None
    assert model_copy.read_bytes() == before


def test_evaluate_prints_table(model_copy, fer_sample, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["evaluate", str(model_copy), str(fer_sample), "--split", "PublicTest", "--out", str(out),
                 "--tta", "--batch-size", "8"]) == 0
    text = capsys.readouterr().out
    assert "accuracy" in text and "macro-F1" in text
    for label in FER2013_LABELS:
        assert label in text
    assert sorted(p.name for p in out.iterdir()) == ["evaluation.json", "evaluation_confusion.png"]


@pytest.fixture
def folder_set(fer_sample, tmp_path):
    """Real FER2013 crops as PNGs: three of the seven classes (synonym names) plus a folder no model knows."""
    training = load_fer2013(fer_sample, splits=["Training"])["Training"]
    root = tmp_path / "faces"
    chosen = {"Happiness": 3, "sad": 4, "surprised": 5, "selfies": 6}  # folder name -> FER row class
    for folder, cls in chosen.items():
        (root / folder).mkdir(parents=True)
        for i, image in enumerate(training.images[training.labels == cls][:5]):
            cv2.imwrite(str(root / folder / f"{i}.png"), image[..., 0])
    return root


def test_evaluate_folder_with_fewer_classes_and_unmatched_folder(model_copy, folder_set, capsys):
    report, err = _run_json(["evaluate", str(model_copy), str(folder_set)], capsys)
    assert "skipped folder 'selfies' (5 images)" in err
    assert report["num_samples"] == 15
    assert report["meta"]["split"] == "all"
    assert report["meta"]["skipped_classes"] == ["selfies"]
    assert report["meta"]["class_mapping"] == {"Happiness": "happy", "sad": "sad", "surprised": "surprise",
                                               "selfies": None}
    assert report["absent_classes"] == ["angry", "disgust", "fear", "neutral"]
    assert report["macro_f1_over"] == ["happy", "sad", "surprise"]
    supports = {label: m["support"] for label, m in report["per_class"].items()}
    assert supports == {"angry": 0, "disgust": 0, "fear": 0, "happy": 5, "sad": 5, "surprise": 5,
                        "neutral": 0}

    # PNG round trip is lossless, so the folder scores equal those of the original rows.
    files = [p for name in ("Happiness", "sad", "surprised") for p in sorted((folder_set / name).iterdir())]
    x = np.stack([cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in files])
    y = np.repeat([3, 4, 5], 5)
    direct = evaluate_predictions(y, predict_array(load_model(model_copy), x), FER2013_LABELS)
    assert report["confusion_matrix"] == direct.confusion.tolist()
    assert report["macro_f1"] == pytest.approx(direct.macro_f1)


def _write_csv(path, header, rows):
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


@pytest.mark.parametrize("case, message", [
    ("missing_model", "no such model file"),
    ("missing_data", "no such file or folder"),
    ("wrong_columns", "expected FER2013 columns"),
    ("unknown_split", "unknown FER2013 split"),
    ("no_matching_folder", "matches the model's labels"),
    ("not_a_dataset", "choose a FER2013 .csv/.csv.gz file or a folder"),
])
def test_bad_input_is_one_clean_line(model_copy, fer_sample, tmp_path, capsys, case, message):
    model, data, extra = str(model_copy), str(fer_sample), []
    if case == "missing_model":
        model = str(tmp_path / "missing.h5")
    elif case == "missing_data":
        data = str(tmp_path / "missing.csv")
    elif case == "wrong_columns":
        data = str(_write_csv(tmp_path / "bad.csv", "label,image,set", ["0,1 2 3,Training"]))
    elif case == "unknown_split":
        extra = ["--split", "Validation"]
    elif case == "no_matching_folder":
        (tmp_path / "set" / "cats").mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "set" / "cats" / "a.png"), np.zeros((48, 48), np.uint8))
        data = str(tmp_path / "set")
    elif case == "not_a_dataset":
        data = str(tmp_path / "notes.txt")
        (tmp_path / "notes.txt").write_text("hello")
    assert main(["evaluate", model, data, *extra]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
