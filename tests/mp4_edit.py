"""Make awkward MP4 files offline for the analysis tests, by editing boxes of a real OpenCV-written MP4.

No ffmpeg is needed: the ``tkhd`` display matrix carries a phone video's rotation, and the ``stts`` table
carries each frame's duration (uneven durations make a variable-frame-rate file). OpenCV's mp4v writer
puts ``moov`` after ``mdat``, so resizing boxes inside ``moov`` moves no sample data and the chunk offsets
stay right.
"""

from __future__ import annotations

import struct
from pathlib import Path

_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts"}


def _parse(buf: bytes) -> list[list]:
    boxes, off = [], 0
    while off < len(buf):
        size, kind = struct.unpack(">I4s", buf[off:off + 8])
        if size < 8:
            raise ValueError("unsupported box size")
        body = buf[off + 8:off + size]
        boxes.append([kind, _parse(body) if kind in _CONTAINERS else body])
        off += size
    return boxes


def _build(boxes: list[list]) -> bytes:
    out = b""
    for kind, body in boxes:
        data = _build(body) if isinstance(body, list) else body
        out += struct.pack(">I4s", len(data) + 8, kind) + data
    return out


def _find(boxes: list[list], path: list[bytes]) -> list:
    for box in boxes:
        if box[0] == path[0]:
            return box if len(path) == 1 else _find(box[1], path[1:])
    raise KeyError(path[0])


def _edit(path: Path, target: Path, fn) -> Path:
    boxes = _parse(Path(path).read_bytes())
    if [b[0] for b in boxes].index(b"moov") < [b[0] for b in boxes].index(b"mdat"):
        raise ValueError("moov before mdat: offsets would move")
    fn(boxes)
    Path(target).write_bytes(_build(boxes))
    return Path(target)


def set_rotation(path: Path, target: Path, degrees: int) -> Path:
    """A copy of ``path`` whose video track says "display rotated clockwise by ``degrees``" (90/180/270).

    The matrix is the one ffmpeg writes (rotation plus the translation that keeps the picture in view;
    FFmpeg ignores a rotation whose translation is missing).
    """
    def fn(boxes: list[list]) -> None:
        tkhd = _find(boxes, [b"moov", b"trak", b"tkhd"])
        body = bytearray(tkhd[1])
        width, height = (v >> 16 for v in struct.unpack(">II", body[-8:]))
        one = 0x10000
        matrices = {90: (0, one, -one, 0, height * one, 0), 180: (-one, 0, 0, -one, width * one, height * one),
                    270: (0, -one, one, 0, 0, width * one)}
        a, b, c, d, x, y = matrices[degrees]
        at = 40 if body[0] == 0 else 52  # the matrix, after version/flags, times, ids and volume
        body[at:at + 36] = struct.pack(">9i", a, b, 0, c, d, 0, x, y, 0x40000000)
        tkhd[1] = bytes(body)

    return _edit(path, target, fn)


def set_frame_durations(path: Path, target: Path, durations: list[int]) -> Path:
    """A copy whose frames last ``durations`` (in the track's time units, one per frame).

    Keep their sum equal to the original's: the edit list and the durations in the headers are not
    changed, and FFmpeg stops reading at the duration they give.
    """
    def fn(boxes: list[list]) -> None:
        stts = _find(boxes, [b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stts"])
        entries = struct.unpack(">I", stts[1][4:8])[0]
        frames = sum(struct.unpack(">II", stts[1][8 + 8 * i:16 + 8 * i])[0] for i in range(entries))
        if len(durations) != frames:
            raise ValueError(f"{frames} frames, {len(durations)} durations")
        stts[1] = stts[1][:4] + struct.pack(">I", len(durations)) + b"".join(
            struct.pack(">II", 1, d) for d in durations)

    return _edit(path, target, fn)


def timescale(path: Path) -> int:
    """Time units per second of the video track (``mdhd``)."""
    mdhd = _find(_parse(Path(path).read_bytes()), [b"moov", b"trak", b"mdia", b"mdhd"])[1]
    return struct.unpack(">I", mdhd[12:16] if mdhd[0] == 0 else mdhd[20:24])[0]


def faststart(path: Path, target: Path) -> Path:
    """A copy with ``moov`` moved before ``mdat`` (as streaming encoders write), chunk offsets fixed."""
    boxes = _parse(Path(path).read_bytes())
    kinds = [b[0] for b in boxes]
    moov = boxes.pop(kinds.index(b"moov"))
    shift = len(_build([moov]))
    for trak in (b for b in moov[1] if b[0] == b"trak"):
        stco = _find(trak[1], [b"mdia", b"minf", b"stbl", b"stco"])
        count = struct.unpack(">I", stco[1][4:8])[0]
        offsets = struct.unpack(f">{count}I", stco[1][8:8 + 4 * count])
        stco[1] = stco[1][:8] + struct.pack(f">{count}I", *(o + shift for o in offsets))
    boxes.insert([b[0] for b in boxes].index(b"mdat"), moov)
    Path(target).write_bytes(_build(boxes))
    return Path(target)
