"""comparison_grid: one or several prediction columns, sizes and colours checked exactly."""

import cv2
import numpy as np

from weaksegtf.visualize import comparison_grid


def _read(path):
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def test_grid_puts_one_column_per_model_side_by_side(tmp_path):
    images = [np.full((32, 48, 3), 200, np.uint8)] * 2
    truths = [np.ones((32, 48), np.uint8)] * 2
    one = _read(comparison_grid(images, truths, [np.zeros((32, 48), np.uint8)] * 2, ["bg", "gland"],
                                tmp_path / "one.png", cell_px=40))
    # cells are 40 x 27 (48 px scaled to 40), padded by 2 px on each side
    assert one.shape == (24 + 2 * 31 + 24, 3 * 44, 3)
    two = _read(comparison_grid(images, truths, {"S": [np.zeros((32, 48), np.uint8)] * 2,
                                                 "S+C": [np.ones((32, 48), np.uint8)] * 2},
                                ["bg", "gland"], tmp_path / "two.png", cell_px=40))
    assert two.shape == (24 + 2 * 31 + 24, 4 * 44, 3)
    y = 24 + 2 + 13  # middle of the first row
    assert tuple(two[y, 44 + 22]) == (220, 40, 40)  # ground truth: gland colour
    assert tuple(two[y, 2 * 44 + 22]) == (200, 200, 200)  # S: background leaves the image untouched
    blended = np.round(0.55 * 200 + 0.45 * np.array([220, 40, 40])).astype(int)
    assert np.abs(two[y, 3 * 44 + 22].astype(int) - blended).max() <= 1  # S+C: gland blended over the image
