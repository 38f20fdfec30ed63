"""Read photos robustly into 8-bit BGR arrays, and expand folders into lists of image files.

``read_image`` reads bytes with numpy and decodes them with OpenCV (so non-ASCII paths work on every
platform), applies the EXIF orientation, reduces 16-bit and float images to 8 bits, composites
transparent images onto white and turns grey images into BGR. Every problem a user can cause (missing,
empty, truncated or non-image file) raises ImageReadError naming the file and what was wrong.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from app.core.errors import ImageReadError
from app.core.labels import IMAGE_EXTENSIONS

logger = logging.getLogger(__name__)

# EXIF orientation tag value -> what to do to the decoded pixels to show them upright.
_ORIENTATION_OPS = {
    2: ("flip", 1),
    3: ("rotate", cv2.ROTATE_180),
    4: ("flip", 0),
    5: ("transpose", None),
    6: ("rotate", cv2.ROTATE_90_CLOCKWISE),
    7: ("transverse", None),
    8: ("rotate", cv2.ROTATE_90_COUNTERCLOCKWISE),
}


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """Whether a path's suffix is one of the image types this program reads."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def list_images(paths: Iterable[str | os.PathLike[str]], recursive: bool = False) -> list[Path]:
    """Expand ``paths``: a folder stands for the image files in it (sorted), a file stands for itself.

    Files named explicitly are kept whatever their suffix, and missing paths are kept too, so the caller
    reports each of them (via ``read_image``) instead of dropping them silently.
    """
    result: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            found = [p for p in path.glob(pattern)
                     if p.is_file() and is_image_file(p) and not p.name.startswith(".")]
            result.extend(sorted(found, key=lambda p: str(p).lower()))
        else:
            result.append(path)
    return result


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as an upright 8-bit BGR array (H, W, 3); raises ImageReadError on any problem."""
    p = Path(path)
    if not p.exists():
        raise ImageReadError(f"{p}: no such file.")
    if p.is_dir():
        raise ImageReadError(f"{p}: is a folder, not an image file.")
    try:
        data = np.fromfile(p, dtype=np.uint8)
    except OSError as exc:
        raise ImageReadError(f"{p}: cannot read the file ({exc.strerror or exc}).") from exc
    if data.size == 0:
        raise ImageReadError(f"{p}: the file is empty.")
    return decode_image(data, name=str(p))


def decode_image(data: np.ndarray | bytes, name: str = "<image>") -> np.ndarray:
    """Decode encoded image bytes (any format OpenCV reads) like ``read_image`` does."""
    buffer = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray)) else data
    if buffer.size == 0:
        raise ImageReadError(f"{name}: the file is empty.")
    truncated = _truncated_format(buffer)
    if truncated:
        raise ImageReadError(f"{name}: the {truncated} file is truncated (it ends before the image data does); "
                             "copy or download it again.")
    try:
        image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:  # e.g. an image larger than OpenCV's pixel limit
        raise ImageReadError(f"{name}: cannot decode the image ({_short_cv_error(exc)}).") from exc
    except MemoryError as exc:
        raise ImageReadError(f"{name}: the image is too large to fit in memory.") from exc
    if image is None or image.size == 0:
        raise ImageReadError(f"{name}: not an image, or a damaged or unsupported image file.")
    image = _to_bgr8(image)
    orientation = _exif_orientation(buffer)
    if orientation in _ORIENTATION_OPS:
        image = _apply_orientation(image, orientation)
    return np.ascontiguousarray(image)


def _short_cv_error(exc: cv2.error) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


def _to_bgr8(image: np.ndarray) -> np.ndarray:
    """Any depth and channel count OpenCV decodes -> uint8 BGR."""
    if image.dtype == np.uint16:
        image = cv2.convertScaleAbs(image, alpha=255.0 / 65535.0)
    elif image.dtype in (np.float32, np.float64):
        finite = np.nan_to_num(image.astype(np.float32, copy=False))
        scale = 255.0 if float(finite.max(initial=0.0)) <= 1.0 else 1.0
        image = np.clip(finite * scale, 0, 255).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = cv2.normalize(image.astype(np.float32), None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    channels = image.shape[2]
    if channels == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if channels == 2:  # grey + alpha
        grey, alpha = image[:, :, 0], image[:, :, 1]
        return cv2.cvtColor(_over_white(grey[:, :, None], alpha), cv2.COLOR_GRAY2BGR)
    if channels == 4:
        return _over_white(image[:, :, :3], image[:, :, 3])
    return image[:, :, :3]


def _over_white(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Composite onto white: transparent areas of a cut-out portrait become white, not black noise."""
    if alpha.min() == 255:
        return np.ascontiguousarray(colour).squeeze(axis=2) if colour.shape[2] == 1 else colour.copy()
    a = alpha.astype(np.float32)[:, :, None] / 255.0
    out = colour.astype(np.float32) * a + 255.0 * (1.0 - a)
    out = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    return out[:, :, 0] if out.shape[2] == 1 else out


def _apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    op, arg = _ORIENTATION_OPS[orientation]
    if op == "flip":
        return cv2.flip(image, arg)
    if op == "rotate":
        return cv2.rotate(image, arg)
    if op == "transpose":
        return cv2.transpose(image)
    return cv2.rotate(cv2.transpose(image), cv2.ROTATE_180)  # transverse


def _exif_orientation(buffer: np.ndarray) -> int:
    """The EXIF orientation tag (1..8), or 1 when there is none or it cannot be read."""
    try:
        from PIL import Image
    except ImportError:  # Pillow is a dependency; without it photos are simply not rotated
        logger.debug("Pillow is not installed; EXIF orientation ignored")
        return 1
    try:
        with warnings.catch_warnings():
            # Only the header is parsed here; the pixels were decoded by OpenCV, so a huge photo is fine.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(np.ascontiguousarray(buffer))) as im:
                value = im.getexif().get(0x0112, 1)
    except Exception as exc:  # noqa: BLE001 - any EXIF problem just means "no rotation"
        logger.debug("no EXIF orientation (%s)", exc)
        return 1
    try:
        return int(value)
    except (TypeError, ValueError):
        return 1


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _truncated_format(buffer: np.ndarray) -> str | None:
    """"JPEG" or "PNG" when the data is one of those formats cut short, else None."""
    if buffer.size >= 3 and buffer[0] == 0xFF and buffer[1] == 0xD8 and buffer[2] == 0xFF:
        return None if _jpeg_is_complete(buffer) else "JPEG"
    if buffer[:8].tobytes() == _PNG_SIGNATURE:
        # The IEND chunk closes every PNG; search the tail only (data may follow it).
        return None if b"IEND" in buffer[-4096:].tobytes() else "PNG"
    return None


def _jpeg_is_complete(buffer: np.ndarray) -> bool:
    """Whether a JPEG's image data reaches an end-of-image marker.

    OpenCV decodes a truncated JPEG into an image whose lower part is grey, with only a warning on
    stderr. The header segments are walked by their lengths to the first start-of-scan; after it an
    FF D9 pair can only be a real end marker (scan data stuffs every FF), so its absence means the file
    was cut. Data appended after the end (motion photos) does not matter. Unparseable headers pass.
    """
    data = buffer
    n = data.size
    pos = 2
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return True  # not a header layout we understand; let the decoder's verdict stand
        marker = int(data[pos + 1])
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xDA:  # start of scan
            break
        if marker == 0xD9:
            return True
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            pos += 2
            continue
        pos += 2 + (int(data[pos + 2]) << 8 | int(data[pos + 3]))
    else:
        return False  # the file ends inside the header
    scan = data[pos + 2:]
    if scan.size < 2:
        return False
    ff = np.flatnonzero(scan[:-1] == 0xFF)
    return bool(np.any(scan[ff + 1] == 0xD9))
