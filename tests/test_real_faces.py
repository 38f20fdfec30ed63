"""What users see: the bundled default model, through ``fer-studio predict``, labels real faces right.

A smiling face is happy, and the photos together show more than one expression; the detection options
(--min-face-size, --min-score) drop the faces they should.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app import cli


def _predict(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[dict], str]:
    code = cli.main(["predict", *args, "--json"])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines() if line.strip()], err


def test_bundled_model_labels_real_faces(capsys, data_dir: Path) -> None:
    code, records, _ = _predict(capsys, str(data_dir / "justin.jpg"), str(data_dir / "two_people.jpg"),
                                str(data_dir / "12_angry_men.jpg"))
    assert code == 0
    by_name = {Path(r["file"]).name: r["faces"] for r in records}
    (justin,) = by_name["justin.jpg"]
    assert justin["label"] == "happy" and justin["score"] > 0.6  # a broad smile
    # The man on the left has a slight closed-mouth smile, the face on the right none: an ambiguous face
    # (the photo ensemble and the default distilled from it call it sad, happy about 0.1; mini_XCEPTION gave
    # happy 0.34), so the check is relative, not its top label or a level of happy.
    smiling, other = sorted(by_name["two_people.jpg"], key=lambda f: f["box"][0])
    assert smiling["probabilities"]["happy"] > 3 * other["probabilities"]["happy"]
    labels = {f["label"] for faces in by_name.values() for f in faces}
    assert len(labels) >= 3, labels  # happy, and the stern jurors' neutral / sad at least
    assert len(by_name["12_angry_men.jpg"]) >= 9


def test_min_face_size_and_score_drop_faces(capsys, data_dir: Path) -> None:
    photo = str(data_dir / "12_angry_men.jpg")
    _, (every,), _ = _predict(capsys, photo)
    sizes = sorted(min(f["box"][2:]) for f in every["faces"])
    cut = sizes[len(sizes) // 2]
    _, (large,), _ = _predict(capsys, photo, "--min-face-size", str(cut))
    assert len(large["faces"]) == sum(s >= cut for s in sizes) < len(every["faces"])
    assert all(min(f["box"][2:]) >= cut for f in large["faces"])
    _, (none,), _ = _predict(capsys, photo, "--min-score", "1")
    assert none["faces"] == [] and none["error"] is None


@pytest.mark.parametrize("option, value, message", [
    ("--min-face-size", "-3", "must be 0 or more pixels"),
    ("--min-face-size", "big", "expected a whole number"),
    ("--min-score", "2", "must be between 0 and 1"),
])
def test_bad_detection_options_are_clear(capsys, data_dir: Path, option: str, value: str, message: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["predict", str(data_dir / "justin.jpg"), option, value])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
