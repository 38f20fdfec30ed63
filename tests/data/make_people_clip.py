"""Make ``people_clip.mp4``: a small multi-face clip with cuts, from the real photos in this folder.

Shots (640x480, 10 frames/s, about 9 s): a slow pan across ``two_people.jpg`` (2 faces); a cut to
``justin.jpg`` (a third person); back to the two people (they must get their old numbers back); a zoom
into a group of ``12_angry_men.jpg`` (new people); justin again. The shot list is printed as JSON so
tests know which frames show whom. Run it from the repository root: ``python tests/data/make_people_clip.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
SIZE = (640, 480)
FPS = 10.0

#: (photo, frames, crop at the start (x, y, w, h), crop at the end): a linear pan/zoom between the two.
SHOTS: tuple[tuple[str, int, tuple[int, int, int, int], tuple[int, int, int, int]], ...] = (
    ("two_people.jpg", 20, (100, 0, 880, 660), (180, 0, 880, 660)),
    ("justin.jpg", 15, (0, 0, 381, 286), (20, 30, 340, 255)),
    ("two_people.jpg", 15, (200, 0, 860, 645), (140, 10, 860, 645)),
    ("12_angry_men.jpg", 20, (0, 100, 720, 540), (40, 110, 660, 495)),
    ("justin.jpg", 15, (10, 40, 360, 270), (0, 0, 381, 286)),
)


def frames() -> list[np.ndarray]:
    out = []
    for name, count, start, end in SHOTS:
        photo = cv2.imread(str(HERE / name))
        if photo is None:
            raise SystemExit(f"missing {HERE / name}")
        for i in range(count):
            t = i / max(1, count - 1)
            x, y, w, h = (round(a + (b - a) * t) for a, b in zip(start, end))
            out.append(cv2.resize(photo[y:y + h, x:x + w], SIZE, interpolation=cv2.INTER_AREA))
    return out


def shot_table() -> list[dict[str, object]]:
    table, first = [], 0
    for name, count, _, _ in SHOTS:
        table.append({"photo": name, "first_frame": first, "last_frame": first + count - 1})
        first += count
    return table


def main(target: Path = HERE / "people_clip.mp4") -> None:
    if target.exists():
        raise SystemExit(f"{target} exists; delete it first to remake it")
    writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"mp4v"), FPS, SIZE)
    for frame in frames():
        writer.write(frame)
    writer.release()
    json.dump(shot_table(), sys.stdout, indent=1)
    print(f"\n{target}: {target.stat().st_size} bytes")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "people_clip.mp4")
