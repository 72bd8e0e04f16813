"""MaskSet folder format: round trip, counts, subsets and every bad input."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from weaksegtf.data import MaskSet, write_png
from weaksegtf.errors import ConfigError, DataError


def _small_set() -> MaskSet:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (6, 5, 3), dtype=np.uint8), rng.integers(0, 256, (4, 7, 3), dtype=np.uint8)]
    masks = [np.zeros((6, 5), np.uint8), np.full((4, 7), 2, np.uint8)]
    masks[0][0, :] = 1
    masks[0][1, 0] = 255
    masks[1][0, 0] = 0
    return MaskSet(images, masks, ["train_2", "train_10"])


def test_write_then_from_folder_gives_equal_arrays(tmp_path: Path) -> None:
    original = _small_set()
    original.write(tmp_path / "set")
    assert sorted(p.name for p in (tmp_path / "set" / "images").iterdir()) == ["train_10.png", "train_2.png"]
    loaded = MaskSet.from_folder(tmp_path / "set", num_classes=3)
    assert loaded.names == ["train_2", "train_10"]  # natural order, not "train_10" first
    assert len(loaded) == 2 and loaded.ignore_value == 255
    for a, b in zip(original.images + original.masks, loaded.images + loaded.masks):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype


def test_class_pixel_counts_skip_ignore_value() -> None:
    counts = _small_set().class_pixel_counts(3)
    # image 0: 30 px, 5 of class 1, 1 ignored, 24 background; image 1: 28 px, 1 background, 27 of class 2
    assert counts.tolist() == [25, 5, 27]
    assert counts.dtype == np.int64


def test_class_pixel_counts_refuse_values_out_of_range() -> None:
    with pytest.raises(DataError, match=r"^masks contain value 2, out of range for 2 classes \(0\.\.1; 255 = not annotated\)$"):
        _small_set().class_pixel_counts(2)


def test_subset_picks_in_order() -> None:
    picked = _small_set().subset([1, 0, 1])
    assert picked.names == ["train_10", "train_2", "train_10"]
    assert picked.masks[0].shape == (4, 7)


def test_jpg_image_with_png_mask_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(tmp_path / "images" / "a.jpg")
    write_png(tmp_path / "masks" / "a.png", np.ones((8, 8), np.uint8))
    loaded = MaskSet.from_folder(tmp_path, num_classes=2)
    assert loaded.names == ["a"] and loaded.images[0].shape == (8, 8, 3)


def _folder(tmp_path: Path, image_shape: tuple[int, int], mask: np.ndarray, name: str = "train_7") -> Path:
    write_png(tmp_path / "images" / f"{name}.png", np.zeros(image_shape + (3,), np.uint8))
    write_png(tmp_path / "masks" / f"{name}.png", mask)
    return tmp_path


def test_mask_size_mismatch_has_exact_message(tmp_path: Path) -> None:
    root = _folder(tmp_path, (522, 775), np.zeros((512, 512), np.uint8))
    with pytest.raises(DataError) as error:
        MaskSet.from_folder(root, num_classes=3)
    assert str(error.value) == (
        f"mask train_7.png has shape (512, 512) but image train_7.png is (522, 775) (in {root})"
    )


def test_mask_value_out_of_range_has_exact_message(tmp_path: Path) -> None:
    mask = np.zeros((4, 4), np.uint8)
    mask[0, 0] = 7
    mask[1, 1] = 255
    root = _folder(tmp_path, (4, 4), mask, name="a")
    with pytest.raises(DataError) as error:
        MaskSet.from_folder(root, num_classes=3)
    assert str(error.value) == (
        f"mask a.png contains value 7, out of range for 3 classes (0..2; 255 = not annotated) (in {root})"
    )


def test_in_memory_validate_names_the_item() -> None:
    broken = _small_set()
    broken.masks[1] = np.zeros((3, 3), np.uint8)
    with pytest.raises(DataError, match=r"^mask 'train_10' has shape \(3, 3\) but image 'train_10' is \(4, 7\)$"):
        broken.validate(3)
    with pytest.raises(DataError, match="2 images, 1 masks and 2 names"):
        MaskSet(broken.images, broken.masks[:1], broken.names).validate(3)


def test_image_without_mask_and_mask_without_image(tmp_path: Path) -> None:
    root = _folder(tmp_path, (4, 4), np.zeros((4, 4), np.uint8), name="a")
    write_png(root / "images" / "b.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DataError, match=r"^image b.png has no mask: expected .*masks/b.png$"):
        MaskSet.from_folder(root, num_classes=2)
    (root / "images" / "b.png").unlink()
    write_png(root / "masks" / "c.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(DataError, match=r"^mask c.png has no image: expected .*images/c.png"):
        MaskSet.from_folder(root, num_classes=2)


def test_jpeg_mask_is_refused(tmp_path: Path) -> None:
    root = _folder(tmp_path, (4, 4), np.zeros((4, 4), np.uint8), name="a")
    (root / "masks" / "a.png").unlink()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(root / "masks" / "a.jpg")
    with pytest.raises(DataError, match=r"^mask .*a.jpg is JPEG"):
        MaskSet.from_folder(root, num_classes=2)


def test_unreadable_image_in_folder_is_named(tmp_path: Path) -> None:
    root = _folder(tmp_path, (4, 4), np.zeros((4, 4), np.uint8), name="a")
    (root / "images" / "a.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match=r"^cannot read image .*images/a.png \(11 bytes\)"):
        MaskSet.from_folder(root, num_classes=2)


def test_empty_and_missing_folders(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(DataError, match=f"^mask set {re.escape(str(tmp_path))} is empty"):
        MaskSet.from_folder(tmp_path, num_classes=2)
    with pytest.raises(DataError, match="does not exist"):
        MaskSet.from_folder(tmp_path / "nowhere", num_classes=2)
    (tmp_path / "other").mkdir()
    with pytest.raises(DataError, match=f"^folder {re.escape(str(tmp_path / 'other' / 'images'))} does not exist$"):
        MaskSet.from_folder(tmp_path / "other", num_classes=2)


def test_bad_num_classes_and_ignore_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ignore_value 1 must be in 3..255"):
        MaskSet.from_folder(tmp_path, num_classes=3, ignore_value=1)
    with pytest.raises(ConfigError, match="num_classes must be in 1..255"):
        _small_set().validate(0)


def test_write_refuses_a_folder_with_files(tmp_path: Path) -> None:
    _small_set().write(tmp_path)
    with pytest.raises(ConfigError, match=f"^folder {re.escape(str(tmp_path / 'images'))} already holds 2 entries"):
        _small_set().write(tmp_path)
