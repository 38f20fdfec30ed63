"""``fer-studio analyze``: a batch with bad videos goes on, JSON-line events, Ctrl-C keeps a valid CSV."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from app.cli import main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_batch_reports_bad_videos_and_goes_on(data_dir, tmp_path, capsys):
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video\n" * 50)
    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / "clip.mp4").write_bytes((data_dir / "woman2_clip.mp4").read_bytes())
    (folder / "readme.txt").write_text("skipped: not a video suffix")
    empty = tmp_path / "empty_folder"
    empty.mkdir()
    code = main(["analyze", str(bad), str(folder), str(tmp_path / "missing.mp4"), str(empty),
                 "--out", str(tmp_path / "out"), "--every", "5"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "Traceback" not in err and "Traceback" not in out
    assert f"{bad}: not a video" in err
    assert "missing.mp4: no such file" in err and "no video files in this folder" in err
    assert "clip.mp4:" in out and "report:" in out
    with open(tmp_path / "out" / "clip" / "faces.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and all(int(r["frame"]) % 5 == 0 for r in rows)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["clip"]


def test_events_jsonl(data_dir, tmp_path, capsys):
    code = main(["analyze", str(data_dir / "woman2_clip.mp4"), str(tmp_path / "nope.mp4"),
                 "--out", str(tmp_path / "out"), "--every", "4", "--events", "jsonl", "--no-reid"])
    out = capsys.readouterr().out
    events = [json.loads(line) for line in out.splitlines()]
    kinds = [e["event"] for e in events]
    assert code == 1
    assert kinds[0] == "start" and kinds[1] == "ready" and kinds[-1] == "done"
    done = next(e for e in events if e["event"] == "video_done")
    assert done["status"] == "done" and os.path.isfile(os.path.join(done["folder"], "report.html"))
    assert done["files"]["csv"].endswith("faces.csv")
    assert any(e["event"] == "video_error" and "no such file" in e["message"] for e in events)
    assert events[-1]["failed"] == 1 and events[-1]["interrupted"] is False


def test_unwritable_out_is_one_clear_error(data_dir, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = main(["analyze", str(data_dir / "woman2_clip.mp4"), "--out", str(blocker)])
    err = capsys.readouterr().err
    assert code == 1 and "not a folder" in err and "Traceback" not in err


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_ctrl_c_ends_cleanly_with_a_valid_csv(data_dir, tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO)
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "analyze", str(data_dir / "people_clip.mp4"), "--out",
         str(tmp_path), "--events", "jsonl"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env, cwd=REPO)
    events = []
    deadline = time.monotonic() + 240
    assert process.stdout is not None
    for line in process.stdout:
        events.append(json.loads(line))
        if events[-1]["event"] == "progress" and events[-1]["analysed"] >= 3:
            process.send_signal(signal.SIGINT)
            break
        assert time.monotonic() < deadline
    rest, err = process.communicate(timeout=120)
    events += [json.loads(line) for line in rest.splitlines()]
    assert process.returncode == 130, err
    assert "Traceback" not in err
    done = next(e for e in events if e["event"] == "video_done")
    assert done["status"] == "interrupted"
    with open(done["files"]["csv"], encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and len(rows) == done["faces"]
    with open(os.path.join(done["folder"], "summary.json"), encoding="utf-8") as handle:
        summary = json.load(handle)
    assert summary["status"] == "interrupted" and summary["frames_analysed"] < 85
