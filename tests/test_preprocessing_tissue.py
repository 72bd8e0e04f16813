"""Tissue mask (Appendix B.1) on the real slide and on drawn images."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from weaksegtf.errors import ConfigError
from weaksegtf.preprocessing import TissueMask, tissue_mask
from weaksegtf.slides import ArrayReader, open_slide

PINK = (200, 120, 180)  # saturation 0.4: tissue
WHITE = (245, 245, 245)


def test_cmu_tissue_fraction(cmu_slide):
    with open_slide(cmu_slide) as slide:
        tissue = TissueMask.from_slide(slide, mpp=8.0)
        image = slide.read_full_at_mpp(8.0)
    # 2220 x 2967 px at 0.499 um/px is 138 x 185 px at 8 um/px.
    assert tissue.mask.shape == (185, 138)
    assert tissue.mpp == pytest.approx(8.0, rel=0.005)
    # The specimen is a strip down the middle of the glass: about 37%.
    assert 0.33 < tissue.fraction < 0.41
    # The morphology only cleans up: the raw saturation threshold agrees to 5%.
    saturation = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)[:, :, 1]
    assert abs((saturation >= 25.5).mean() - tissue.fraction) < 0.05
    assert tissue.to_image().dtype == np.uint8 and set(np.unique(tissue.to_image())) == {0, 255}


def test_holes_are_filled_and_specks_removed():
    image = np.full((100, 100, 3), WHITE, np.uint8)
    cv2.rectangle(image, (20, 20), (79, 79), PINK, -1)  # 60 x 60 px tissue
    cv2.rectangle(image, (40, 40), (49, 49), WHITE, -1)  # a 10 x 10 px duct
    cv2.rectangle(image, (2, 2), (4, 4), PINK, -1)  # a 3 x 3 px speck
    mask = tissue_mask(image, mpp=8.0, opening_radius_um=8.0, min_tissue_area_um2=2000.0)
    assert mask[45, 45]  # the duct is filled (Appendix B.1)
    assert not mask[3, 3]  # the speck is removed
    # The opening's 3 x 3 cross (radius 8 um = 1 px) rounds the four corners off.
    assert mask.sum() == 60 * 60 - 4


def test_sizes_are_in_micrometres_not_pixels():
    image = np.full((100, 100, 3), WHITE, np.uint8)
    cv2.rectangle(image, (10, 10), (19, 19), PINK, -1)  # 10 x 10 px
    # At 8 um/px the square is 6400 um^2 and survives a 5000 um^2 minimum;
    # at 4 um/px it is 1600 um^2 and does not.
    assert tissue_mask(image, mpp=8.0, opening_radius_um=0, min_tissue_area_um2=5000).sum() == 100
    assert tissue_mask(image, mpp=4.0, opening_radius_um=0, min_tissue_area_um2=5000).sum() == 0


def test_saturation_threshold_is_ten_percent_of_maximum():
    image = np.zeros((1, 2, 3), np.uint8)
    image[0, 0] = (255, 255 - 26, 255 - 26)  # saturation 26/255 = 10.2%
    image[0, 1] = (255, 255 - 25, 255 - 25)  # saturation 25/255 = 9.8%
    mask = tissue_mask(image, mpp=8.0, fill_holes=False, opening_radius_um=0, min_tissue_area_um2=0)
    assert mask.tolist() == [[True, False]]


def test_white_slide_has_no_tissue():
    slide = ArrayReader(np.full((400, 300, 3), 250, np.uint8), mpp=0.5)
    tissue = TissueMask.from_slide(slide, mpp=8.0)
    assert tissue.fraction == 0.0 and tissue.area_um2 == 0.0


def test_tissue_fractions_of_boxes_in_level0_pixels():
    mask = np.zeros((10, 10), bool)
    mask[:, :5] = True  # left half is tissue
    # 10 x 10 mask pixels over a 100 x 100 px slide: 10 level-0 px per mask px.
    tissue = TissueMask(mask, mpp=5.0, slide_size_px=(100, 100), slide_mpp=0.5)
    boxes = [(0, 0, 50, 50), (25, 0, 50, 50), (50, 0, 50, 50), (90, 90, 40, 40), (200, 0, 10, 10)]
    # The fourth box sticks out: only its in-slide part (one mask px) counts.
    assert tissue.tissue_fractions(np.array(boxes)).tolist() == [1.0, 0.5, 0.0, 0.0, 0.0]
    assert tissue.tissue_fractions(np.array([(40, 0, 20, 100)])).tolist() == [0.5]


def test_overlay_is_the_size_of_the_image():
    tissue = TissueMask(np.ones((10, 10), bool), 8.0, (160, 160), 0.5)
    overlay = tissue.overlay(np.full((40, 40, 3), 255, np.uint8))
    assert overlay.shape == (40, 40, 3)
    assert (overlay != 255).any()  # the outline is drawn


def test_bad_image_is_refused():
    with pytest.raises(ConfigError, match=r"got \(4, 4\) uint8"):
        tissue_mask(np.zeros((4, 4), np.uint8), mpp=8.0)
