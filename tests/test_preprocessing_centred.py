"""Centred ground-truth extraction and the K-means split (Appendix B.2) on drawn masks."""

from __future__ import annotations

import numpy as np
import pytest

from weaksegtf.errors import ConfigError
from weaksegtf.preprocessing import (
    LabelMap,
    centred_patch_centres,
    kmeans,
    kmeans_split_count,
    plan_centred_patches,
)


@pytest.mark.parametrize(
    ("area", "patch", "count"), [(0, 32, 1), (1, 32, 2), (1024, 32, 2), (1025, 32, 3), (4000, 32, 5)]
)
def test_split_count_is_ceil_of_one_plus_area_over_patch_area(area, patch, count):
    assert kmeans_split_count(area, patch) == count


def test_split_count_refuses_empty_patch():
    with pytest.raises(ConfigError, match="got 0"):
        kmeans_split_count(10, 0)


@pytest.fixture
def drawn() -> np.ndarray:
    labels = np.zeros((200, 200), np.uint8)
    labels[10:20, 30:40] = 1  # fits in a 32-px patch: one centre
    labels[170:172, 10:60] = 1  # 100 px but 50 px long: ceil(1 + 100/1024) = 2 centres
    labels[50:150, 60:100] = 2  # 4000 px: ceil(1 + 4000/1024) = 5 centres
    labels[0:5, 190:200] = 255  # not annotated: never a region
    return labels


def test_centres_on_drawn_mask(drawn):
    centres, classes = centred_patch_centres(drawn, patch_size_px=32)
    assert classes.tolist() == [1, 1, 1, 2, 2, 2, 2, 2]
    # A small region is centred on its bounding box [10, 20) x [30, 40).
    assert centres[0].tolist() == [15.0, 35.0]
    # The thin line [170, 172) x [10, 60) splits into its two halves.
    line = sorted(centres[1:3].tolist(), key=lambda c: c[1])
    assert line[0] == pytest.approx([171.0, 22.5], abs=1.0)
    assert line[1] == pytest.approx([171.0, 47.5], abs=1.0)
    # The big region's five centres lie inside it and are distinct.
    big = centres[3:]
    assert ((big[:, 0] > 50) & (big[:, 0] < 150) & (big[:, 1] > 60) & (big[:, 1] < 100)).all()
    assert len({tuple(np.round(c, 3)) for c in big.tolist()}) == 5


def test_centres_are_deterministic_and_filtered_by_class(drawn):
    first, _ = centred_patch_centres(drawn, patch_size_px=32, seed=3)
    second, _ = centred_patch_centres(drawn, patch_size_px=32, seed=3)
    np.testing.assert_array_equal(first, second)
    only_two, classes = centred_patch_centres(drawn, patch_size_px=32, classes=[2])
    assert classes.tolist() == [2] * 5
    # A bigger patch holds the line whole: one centre for it.
    _, classes = centred_patch_centres(drawn, patch_size_px=64, classes=[1])
    assert classes.tolist() == [1, 1]


def test_kmeans_finds_two_separated_blobs():
    points = np.concatenate([np.zeros((50, 2)), np.full((50, 2), 10.0)])
    centres = kmeans(points, 2, seed=0)
    assert sorted(centres.tolist()) == [[0.0, 0.0], [10.0, 10.0]]
    assert kmeans(points, 5).shape == (2, 2)  # never more centres than distinct points


def test_centred_plans_map_to_level0_and_stay_inside_the_slide():
    # Labels at 1/4 of a 700 x 1000 px slide; 64-px patches at 2 um/px on a
    # 0.5 um/px slide cover 256 level-0 px.
    labels = np.zeros((250, 175), np.uint8)
    labels[20:30, 40:50] = 1  # centre (25, 45) -> level 0 (x=180, y=100)
    labels[100:110, 165:175] = 1  # at the right edge: shifted inside
    plans = plan_centred_patches(
        LabelMap(labels, (700, 1000)), slide_mpp=0.5, patch_mpp=2.0, patch_size_px=64
    )
    assert [(p.x_px, p.y_px) for p in plans] == [(52, 0), (444, 292)]
    assert all(p.kind == "mask" and p.source == "centred" for p in plans)
    first = plans[0].mask
    assert first.shape == (64, 64)
    # The region [80, 120) x [160, 200) level-0 px lands at rows 20..29, cols 27..36.
    assert np.argwhere(first == 1).min(axis=0).tolist() == [20, 27]
    assert np.argwhere(first == 1).max(axis=0).tolist() == [29, 36]
    assert plans[0].classes == (0, 1)


def test_centred_patch_on_slide_smaller_than_patch_starts_at_zero():
    labels = np.ones((20, 30), np.uint8)  # the whole 30 x 20 px slide is class 1
    plans = plan_centred_patches(LabelMap(labels, (30, 20)), 1.0, 1.0, patch_size_px=64)
    assert [(p.x_px, p.y_px) for p in plans] == [(0, 0)]
    mask = plans[0].mask
    assert (mask[:20, :30] == 1).all() and (mask[20:] == 255).all() and (mask[:, 30:] == 255).all()
