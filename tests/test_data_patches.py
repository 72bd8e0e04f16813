"""Tiles from mask and label sets: exact counts, positions and padding."""

from __future__ import annotations

import numpy as np
import pytest

from weaksegtf.data import (
    LabelSet,
    MaskSet,
    cut_tiles,
    downsample_label_set,
    downsample_mask_set,
    label_set_to_arrays,
    mask_set_to_arrays,
    pad_to_tile,
    resize_image,
    resize_mask,
)
from weaksegtf.errors import ConfigError


def _coordinates_image(height: int, width: int) -> np.ndarray:
    """Channel 0 holds y, channel 1 holds x, so each tile shows where it came from."""
    yy, xx = np.mgrid[0:height, 0:width]
    return np.stack([yy, xx, np.zeros_like(yy)], axis=-1).astype(np.uint8)


def test_mask_set_tiles_follow_tile_grid() -> None:
    image = _coordinates_image(100, 150)
    mask = (image[:, :, 1] % 3).astype(np.uint8)
    images, masks = mask_set_to_arrays(MaskSet([image], [mask], ["a"]), tile_size_px=64)
    # tile_grid(100, 150, 64): ys [0, 36], xs [0, 64, 86] -> 6 tiles, row-major.
    assert images.shape == (6, 64, 64, 3) and images.dtype == np.uint8
    assert masks.shape == (6, 64, 64) and masks.dtype == np.uint8
    corners = [(int(t[0, 0, 0]), int(t[0, 0, 1])) for t in images]
    assert corners == [(0, 0), (0, 64), (0, 86), (36, 0), (36, 64), (36, 86)]
    np.testing.assert_array_equal(masks[4], mask[36:100, 64:128])


def test_stride_makes_overlapping_tiles() -> None:
    image = _coordinates_image(64, 96)
    images, _ = mask_set_to_arrays(MaskSet([image], [np.zeros((64, 96), np.uint8)], ["a"]), 64, stride_px=16)
    assert [int(t[0, 0, 1]) for t in images] == [0, 16, 32]


def test_small_images_are_padded_white_and_ignored() -> None:
    image = np.zeros((20, 30, 3), np.uint8)
    mask = np.ones((20, 30), np.uint8)
    mask_set = MaskSet([image], [mask], ["small"], ignore_value=200)
    images, masks = mask_set_to_arrays(mask_set, 32)
    assert images.shape == (1, 32, 32, 3) and masks.shape == (1, 32, 32)
    assert (images[0, :20, :30] == 0).all() and (masks[0, :20, :30] == 1).all()
    assert (images[0, 20:] == 255).all() and (images[0, :, 30:] == 255).all()
    assert (masks[0, 20:] == 200).all() and (masks[0, :, 30:] == 200).all()


def test_several_images_concatenate_in_order() -> None:
    mask_set = MaskSet(
        [np.zeros((64, 64, 3), np.uint8), np.full((64, 128, 3), 9, np.uint8)],
        [np.zeros((64, 64), np.uint8), np.full((64, 128), 2, np.uint8)],
        ["a", "b"],
    )
    images, masks = mask_set_to_arrays(mask_set, 64)
    assert images.shape == (3, 64, 64, 3)
    assert [int(m.max()) for m in masks] == [0, 2, 2]


def test_label_tiles_inherit_image_label() -> None:
    label_set = LabelSet(
        [np.zeros((100, 150, 3), np.uint8), np.zeros((10, 10, 3), np.uint8)], [2, 1], ["a", "b"]
    )
    images, labels = label_set_to_arrays(label_set, 64)
    assert images.shape == (7, 64, 64, 3)
    assert labels.dtype == np.int32
    assert labels.tolist() == [2, 2, 2, 2, 2, 2, 1]
    assert (images[6, 10:] == 255).all()


def test_empty_sets_give_empty_arrays() -> None:
    images, masks = mask_set_to_arrays(MaskSet([], [], []), 32)
    assert images.shape == (0, 32, 32, 3) and masks.shape == (0, 32, 32)
    images, labels = label_set_to_arrays(LabelSet([], [], []), 32)
    assert images.shape == (0, 32, 32, 3) and labels.shape == (0,) and labels.dtype == np.int32


def test_pad_and_cut_helpers() -> None:
    assert pad_to_tile(np.zeros((2, 3), np.uint8), 4, 9).tolist() == [
        [0, 0, 0, 9], [0, 0, 0, 9], [9, 9, 9, 9], [9, 9, 9, 9]
    ]
    assert cut_tiles(np.zeros((200, 300, 3), np.uint8), 128).shape == (6, 128, 128, 3)
    with pytest.raises(ConfigError, match="tile_size_px must be positive, got 0"):
        cut_tiles(np.zeros((4, 4), np.uint8), 0)


def test_resize_image_and_mask() -> None:
    image = np.zeros((4, 6, 3), np.uint8)
    image[:, :2] = 100  # columns 0-1 average to 100, 2-3 to 50, 4-5 to 0
    image[:, 2] = 100
    half = resize_image(image, 0.5)
    assert half.shape == (2, 3, 3)
    assert half[:, :, 0].tolist() == [[100, 50, 0], [100, 50, 0]]
    mask = np.array([[0, 1], [2, 255]], np.uint8)
    assert resize_mask(mask, 2.0).tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 255, 255], [2, 2, 255, 255]]
    assert resize_image(np.zeros((522, 775, 3), np.uint8), 0.5).shape == (261, 388, 3)
    assert resize_mask(np.zeros((522, 775), np.uint8), 0.5).shape == (261, 388)


def test_downsample_sets_keep_values_and_alignment() -> None:
    mask = np.zeros((8, 8), np.uint8)
    mask[:4, :4] = 2
    mask[4:, 4:] = 255
    mask_set = MaskSet([np.zeros((8, 8, 3), np.uint8)], [mask], ["a"])
    half = downsample_mask_set(mask_set, 2)
    assert half.images[0].shape == (4, 4, 3)
    assert half.masks[0].tolist() == [[2, 2, 0, 0], [2, 2, 0, 0], [0, 0, 255, 255], [0, 0, 255, 255]]
    assert downsample_mask_set(mask_set, 1) is mask_set
    label_set = LabelSet([np.zeros((9, 7, 3), np.uint8)], [1], ["a"])
    assert downsample_label_set(label_set, 3).images[0].shape == (3, 2, 3)
    with pytest.raises(ConfigError, match="downsample factor must be an int of at least 1, got 0"):
        downsample_mask_set(mask_set, 0)


def test_tile_rule_label_arrays_keep_only_dominant_tiles():
    from weaksegtf.data import MaskSet, tile_rule_label_arrays

    image = np.zeros((32, 48, 3), np.uint8)
    mask = np.zeros((32, 48), np.uint8)
    mask[:16, 16:32] = 2          # tile (0, 16): all class 2
    mask[16:, 32:40] = 1          # tile (16, 32): half class 1 -> dropped
    mask[16:17, 0:10] = 1         # tile (16, 0): 10/256 class 1 -> background (96%)
    images, labels = tile_rule_label_arrays(MaskSet([image], [mask], ["a"]), 16)
    # Six 16-px tiles, row-major: bg, 2, bg / bg(96%), bg, dropped.
    assert labels.tolist() == [0, 2, 0, 0, 0]
    assert images.shape == (5, 16, 16, 3)
