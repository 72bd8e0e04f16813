"""Reading images and masks: conversions, and every bad file refused by name."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image

from weaksegtf.data.images import list_image_files, natural_key, read_mask, read_rgb, write_png
from weaksegtf.errors import DataError


def _rgb(height: int = 6, width: int = 5) -> np.ndarray:
    return np.arange(height * width * 3, dtype=np.uint8).reshape(height, width, 3)


def test_png_round_trip_keeps_rgb_order(tmp_path: Path) -> None:
    image = _rgb()
    image[0, 0] = (255, 0, 0)  # pure red must stay red, not become blue
    write_png(tmp_path / "sub" / "a.png", image)
    read = read_rgb(tmp_path / "sub" / "a.png")
    assert read.dtype == np.uint8 and read.shape == (6, 5, 3)
    np.testing.assert_array_equal(read, image)
    assert read[0, 0].tolist() == [255, 0, 0]


def test_grayscale_becomes_three_equal_channels(tmp_path: Path) -> None:
    gray = np.array([[0, 100], [200, 255]], np.uint8)
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    read = read_rgb(tmp_path / "g.png")
    assert read.shape == (2, 2, 3)
    assert read[:, :, 0].tolist() == [[0, 100], [200, 255]]
    np.testing.assert_array_equal(read[:, :, 0], read[:, :, 2])


def test_rgba_is_composited_over_white(tmp_path: Path) -> None:
    rgba = np.array([[[255, 0, 0, 255], [0, 0, 0, 0]], [[0, 0, 255, 128], [10, 20, 30, 255]]], np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    read = read_rgb(tmp_path / "a.png")
    assert read.shape == (2, 2, 3)
    assert read[0, 0].tolist() == [255, 0, 0]  # opaque: unchanged
    assert read[0, 1].tolist() == [255, 255, 255]  # transparent: white
    assert read[1, 0].tolist() == [127, 127, 255]  # half: 255 * (1 - 128/255) = 127
    assert read[1, 1].tolist() == [10, 20, 30]


def test_sixteen_bit_is_scaled_to_eight(tmp_path: Path) -> None:
    values = np.array([[0, 257], [32896, 65535]], np.uint16)
    cv2.imwrite(str(tmp_path / "g16.png"), values)
    assert read_rgb(tmp_path / "g16.png")[:, :, 1].tolist() == [[0, 1], [128, 255]]
    tifffile.imwrite(tmp_path / "rgb16.tif", np.stack([values] * 3, axis=-1), photometric="rgb")
    assert read_rgb(tmp_path / "rgb16.tif")[:, :, 0].tolist() == [[0, 1], [128, 255]]


def test_tiff_and_jpeg_are_read(tmp_path: Path) -> None:
    image = _rgb()
    tifffile.imwrite(tmp_path / "a.tif", image, photometric="rgb")
    np.testing.assert_array_equal(read_rgb(tmp_path / "a.tif"), image)
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(image, -1, 0), photometric="rgb", planarconfig="separate")
    np.testing.assert_array_equal(read_rgb(tmp_path / "planar.tif"), image)
    flat = np.full((16, 16, 3), (200, 40, 90), np.uint8)
    Image.fromarray(flat).save(tmp_path / "a.jpg", quality=95)
    assert np.abs(read_rgb(tmp_path / "a.jpg").astype(int) - flat).max() <= 3


@pytest.mark.parametrize("channels", [2, 5])
def test_wrong_channel_count_is_refused(tmp_path: Path, channels: int) -> None:
    path = tmp_path / f"c{channels}.tif"
    tifffile.imwrite(path, np.zeros((4, 3, channels), np.uint8), photometric="minisblack", planarconfig="contig")
    with pytest.raises(DataError) as error:
        read_rgb(path)
    assert str(error.value) == (
        f"image {path} has shape (4, 3, {channels}); expected (H, W) grayscale, "
        f"(H, W, 3) RGB or (H, W, 4) RGBA"
    )


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=f"^image {re.escape(str(tmp_path / 'nope.png'))} does not exist$"):
        read_rgb(tmp_path / "nope.png")
    with pytest.raises(DataError, match="^mask .*nope.png does not exist$"):
        read_mask(tmp_path / "nope.png")


def test_unreadable_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "junk.png"
    path.write_bytes(b"this is not an image")
    with pytest.raises(DataError) as error:
        read_rgb(path)
    assert str(error.value).startswith(f"cannot read image {path} (20 bytes): ")


def test_truncated_png_is_named(tmp_path: Path) -> None:
    full = tmp_path / "full.png"
    write_png(full, np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(DataError) as error:
        read_rgb(truncated)
    message = str(error.value)
    assert message.startswith(f"cannot read image {truncated} (")
    assert "truncated" in message


def test_mask_from_three_equal_channels_and_palette(tmp_path: Path) -> None:
    mask = np.array([[0, 1], [2, 255]], np.uint8)
    write_png(tmp_path / "rgb.png", np.stack([mask] * 3, axis=-1))
    assert read_mask(tmp_path / "rgb.png").tolist() == [[0, 1], [2, 255]]
    palette = Image.fromarray(mask, "P")
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [9, 9, 9] * 253)
    palette.save(tmp_path / "p.png")
    assert read_mask(tmp_path / "p.png").tolist() == [[0, 1], [2, 255]]
    cv2.imwrite(str(tmp_path / "m16.png"), mask.astype(np.uint16))
    assert read_mask(tmp_path / "m16.png").tolist() == [[0, 1], [2, 255]]


def test_mask_with_differing_channels_is_refused(tmp_path: Path) -> None:
    write_png(tmp_path / "colour.png", _rgb())
    with pytest.raises(DataError, match=r"^mask .*colour.png has 3 channels that differ"):
        read_mask(tmp_path / "colour.png")


def test_sixteen_bit_mask_above_255_is_refused(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "big.png"), np.array([[0, 300]], np.uint16))
    with pytest.raises(DataError, match=r"big.png holds values 0\.\.300; expected class indices in 0\.\.255"):
        read_mask(tmp_path / "big.png")


def test_write_png_refuses_wrong_arrays(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="array has type float64; expected uint8"):
        write_png(tmp_path / "f.png", np.zeros((2, 2)))
    with pytest.raises(DataError, match=r"array has shape \(2, 2, 2\); expected"):
        write_png(tmp_path / "c.png", np.zeros((2, 2, 2), np.uint8))


def test_list_image_files_natural_order_and_duplicates(tmp_path: Path) -> None:
    for name in ["train_10.png", "train_2.png", "train_1.jpg", ".hidden.png", "notes.txt"]:
        (tmp_path / name).write_bytes(b"")
    assert list(list_image_files(tmp_path)) == ["train_1", "train_2", "train_10"]
    (tmp_path / "train_2.tif").write_bytes(b"")
    with pytest.raises(DataError, match="share the name 'train_2'"):
        list_image_files(tmp_path)
    assert sorted(["b10", "b9", "a"], key=natural_key) == ["a", "b9", "b10"]
