"""The section 3.3 tile rule on hand-made masks, and the sliding-window planner."""

from __future__ import annotations

import numpy as np
import pytest

from weaksegtf.errors import ConfigError
from weaksegtf.preprocessing import LabelMap, TissueMask, classify_tile, plan_tiled_patches

NA = 255  # not annotated


def tile(*counts: tuple[int, int]) -> np.ndarray:
    """A 10 x 10 tile filled with (value, count) runs in order."""
    values = np.concatenate([np.full(n, v, np.uint8) for v, n in counts])
    assert values.size == 100
    return values.reshape(10, 10)


@pytest.mark.parametrize(
    ("mask", "kind", "label", "classes"),
    [
        (tile((1, 100)), "label", 1, (1,)),
        (tile((0, 90), (1, 10)), "label", 0, (0, 1)),  # exactly 90% counts
        (tile((0, 89), (1, 11)), "mask", None, (0, 1)),  # two classes
        (tile((0, 85), (1, 10), (2, 5)), "ignore", None, (0, 1, 2)),  # three classes
        (tile((0, 95), (1, 3), (2, 2)), "label", 0, (0, 1, 2)),  # dominance comes first
        (tile((1, 80), (NA, 20)), "ignore", None, (1,)),  # one class, 80%
        (tile((1, 92), (NA, 8)), "label", 1, (1,)),
        (tile((1, 50), (NA, 50)), "ignore", None, (1,)),  # unannotated counts in the share
        (tile((0, 60), (2, 30), (NA, 10)), "mask", None, (0, 2)),
        (tile((NA, 100)), "ignore", None, ()),
    ],
)
def test_tile_rule(mask, kind, label, classes):
    decision = classify_tile(mask)
    assert (decision.kind, decision.label, decision.classes) == (kind, label, classes)


def test_thresholds_are_parameters():
    three = tile((0, 85), (1, 10), (2, 5))
    assert classify_tile(three, dominant_fraction=0.8).kind == "label"
    assert classify_tile(three, mask_classes=3).kind == "mask"
    with pytest.raises(ConfigError, match="got 1.5"):
        classify_tile(three, dominant_fraction=1.5)


def test_share_is_over_pixels_inside_the_slide():
    mask = np.full((10, 10), NA, np.uint8)
    mask[:, :4] = 1  # a slide 4 px wide padded to a 10-px tile
    inside = np.zeros((10, 10), bool)
    inside[:, :4] = True
    decision = classify_tile(mask, inside=inside)
    assert (decision.kind, decision.label, decision.dominant_fraction) == ("label", 1, 1.0)


def test_sliding_window_exact_corners_tissue_and_rule():
    # A 700 x 1000 px slide at 0.5 um/px is 175 x 250 px at 2 um/px; 64-px tiles
    # start at x = 0, 64, 111 and y = 0, 64, 128, 186 (last tile flush with the end).
    labels = np.zeros((250, 175), np.uint8)
    labels[0:128, 0:64] = 1
    labels[64:128, 64:96] = 2
    labels[0:10, 111:140] = 1
    labels[10:20, 111:140] = 2
    tissue = np.ones((250, 175), bool)
    tissue[186:] = False
    plans = plan_tiled_patches(
        LabelMap(labels, (700, 1000)),
        slide_mpp=0.5,
        patch_mpp=2.0,
        patch_size_px=64,
        tissue=TissueMask(tissue, 2.0, (700, 1000), 0.5),
    )
    corners = [(p.x_px, p.y_px) for p in plans]
    assert corners == [(x, y) for y in (0, 256, 512, 744) for x in (0, 256, 444)]
    summary = [(p.kind, p.label, p.reason) for p in plans]
    assert summary == [
        ("label", 1, ""), ("label", 0, ""), ("ignore", None, "tile rule"),
        ("label", 1, ""), ("mask", None, ""), ("label", 0, ""),
        ("label", 0, ""), ("label", 0, ""), ("label", 0, ""),
        ("ignore", None, "tissue"), ("ignore", None, "tissue"), ("ignore", None, "tissue"),
    ]
    # Rows 128..191 hold 58 rows of tissue: 90.6%, above the 75% threshold.
    assert plans[6].tissue_fraction == pytest.approx(58 / 64)
    mask_plan = plans[4]
    assert mask_plan.classes == (0, 2)
    np.testing.assert_array_equal(mask_plan.mask, labels[64:128, 64:128])


def test_stride_makes_overlapping_tiles():
    labels = LabelMap(np.ones((100, 100), np.uint8), (100, 100))
    plans = plan_tiled_patches(labels, 1.0, 1.0, patch_size_px=64, stride_px=32)
    assert sorted({p.x_px for p in plans}) == [0, 32, 36]
