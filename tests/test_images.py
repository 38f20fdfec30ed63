"""read_image / list_images on real photos and on every kind of bad or unusual file, made in tmp_path."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.core.errors import ImageReadError
from app.core.images import decode_image, list_images, read_image


def test_reads_real_photo_as_bgr8(data_dir: Path) -> None:
    image = read_image(data_dir / "two_people.jpg")
    assert image.dtype == np.uint8 and image.shape == (661, 1126, 3)
    reference = cv2.imread(str(data_dir / "two_people.jpg"), cv2.IMREAD_COLOR)
    assert np.array_equal(image, reference)


def test_missing_file_names_file(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match=r"nothere\.jpg: no such file"):
        read_image(tmp_path / "nothere.jpg")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"empty\.jpg: the file is empty"):
        read_image(path)


def test_folder_is_not_an_image(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="folder"):
        read_image(tmp_path)


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.97])
def test_truncated_jpeg(tmp_path: Path, data_dir: Path, fraction: float) -> None:
    data = (data_dir / "justin.jpg").read_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ImageReadError, match=r"cut\.jpg: the JPEG file is truncated"):
        read_image(path)


def test_jpeg_with_data_after_the_end_is_fine(tmp_path: Path, data_dir: Path) -> None:
    # Motion photos append a video after the JPEG's end marker; that is not truncation.
    path = tmp_path / "motion.jpg"
    path.write_bytes((data_dir / "justin.jpg").read_bytes() + b"\x00ftypmp42" + bytes(5000))
    assert read_image(path).shape == (384, 381, 3)


def test_truncated_png(tmp_path: Path) -> None:
    ok, encoded = cv2.imencode(".png", np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))
    assert ok
    path = tmp_path / "cut.png"
    path.write_bytes(encoded.tobytes()[:-2000])
    with pytest.raises(ImageReadError, match=r"cut\.png: the PNG file is truncated"):
        read_image(path)


def test_text_file_named_jpg(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a photo\n", encoding="utf-8")
    with pytest.raises(ImageReadError, match=r"notes\.jpg: not an image"):
        read_image(path)


def test_16_bit_png_is_scaled_to_8_bit(tmp_path: Path) -> None:
    values = np.array([0, 257, 32896, 65535], np.uint16)  # -> 0, 1, 128, 255
    image16 = np.tile(values, (4, 1))[:, :, None].repeat(3, axis=2)
    path = tmp_path / "deep.png"
    assert cv2.imwrite(str(path), image16)
    image = read_image(path)
    assert image.dtype == np.uint8 and image.shape == (4, 4, 3)
    assert image[0, :, 0].tolist() == [0, 1, 128, 255]


def test_rgba_png_is_composited_on_white(tmp_path: Path) -> None:
    bgra = np.zeros((10, 20, 4), np.uint8)
    bgra[:, :10] = (255, 0, 0, 255)  # opaque blue on the left
    bgra[:, 10:] = (0, 0, 0, 0)  # fully transparent on the right
    path = tmp_path / "cutout.png"
    assert cv2.imwrite(str(path), bgra)
    image = read_image(path)
    assert image.shape == (10, 20, 3)
    assert image[5, 2].tolist() == [255, 0, 0]
    assert image[5, 15].tolist() == [255, 255, 255]


def test_grey_image_becomes_bgr(tmp_path: Path) -> None:
    grey = np.arange(0, 250, 10, dtype=np.uint8).reshape(5, 5)
    path = tmp_path / "grey.png"
    assert cv2.imwrite(str(path), grey)
    image = read_image(path)
    assert image.shape == (5, 5, 3)
    assert np.array_equal(image[:, :, 0], grey) and np.array_equal(image[:, :, 2], grey)


@pytest.mark.parametrize("orientation, shape, corner", [
    (1, (60, 90), (0, 0)),  # upright: the red block stays top-left
    (3, (60, 90), (59, 89)),  # 180 degrees: bottom-right
    (6, (90, 60), (0, 59)),  # camera turned: shown rotated 90 degrees clockwise, block top-right
    (8, (90, 60), (89, 0)),  # 90 degrees anticlockwise: bottom-left
])
def test_exif_orientation_is_applied(tmp_path: Path, orientation: int, shape: tuple[int, int],
                                     corner: tuple[int, int]) -> None:
    from PIL import Image

    rgb = np.full((60, 90, 3), 255, np.uint8)
    rgb[:20, :20] = (255, 0, 0)  # red block in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"exif{orientation}.jpg"
    Image.fromarray(rgb).save(path, exif=exif, quality=95)
    image = read_image(path)
    assert image.shape[:2] == shape
    b, g, r = image[corner].tolist()
    assert r > 200 and g < 60 and b < 60, f"red block not at {corner}: {image[corner]}"


def test_huge_image(tmp_path: Path) -> None:
    big = np.full((8000, 12000, 3), 90, np.uint8)
    big[1000:2000, 3000:5000] = (10, 200, 30)
    ok, encoded = cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    path = tmp_path / "huge.jpg"
    encoded.tofile(path)
    del big
    image = read_image(path)
    assert image.shape == (8000, 12000, 3)
    assert abs(int(image[1500, 4000, 1]) - 200) < 10


def test_non_ascii_path(tmp_path: Path, data_dir: Path) -> None:
    folder = tmp_path / "情绪"
    folder.mkdir()
    path = folder / "фото_情绪.jpg"
    shutil.copyfile(data_dir / "justin.jpg", path)
    assert read_image(path).shape == (384, 381, 3)
    assert list_images([folder]) == [path]
    with pytest.raises(ImageReadError, match="фото_нет.jpg"):
        read_image(folder / "фото_нет.jpg")


def test_decode_bytes(data_dir: Path) -> None:
    assert decode_image((data_dir / "justin.jpg").read_bytes()).shape == (384, 381, 3)
    with pytest.raises(ImageReadError, match="empty"):
        decode_image(b"")


def test_list_images_expands_folders_sorted(tmp_path: Path) -> None:
    for name in ("b.jpg", "A.PNG", "c.webp", "notes.txt", ".hidden.jpg"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.jpg").write_bytes(b"x")
    listed = list_images([tmp_path])
    assert [p.name for p in listed] == ["A.PNG", "b.jpg", "c.webp"]
    assert [p.name for p in list_images([tmp_path], recursive=True)] == ["A.PNG", "b.jpg", "c.webp", "d.jpg"]
    # Named files and missing paths are kept, in order, so the caller reports them.
    explicit = list_images([tmp_path / "notes.txt", tmp_path / "missing.jpg", tmp_path / "sub"])
    assert [p.name for p in explicit] == ["notes.txt", "missing.jpg", "d.jpg"]
