"""The synthetic H&E-like dataset: deterministic, both kinds, consistent masks."""

from __future__ import annotations

import numpy as np
import pytest

from weaksegtf.data import SYNTHETIC_CLASS_NAMES, make_synthetic_dataset
from weaksegtf.errors import ConfigError


@pytest.fixture(scope="module")
def dataset():
    return make_synthetic_dataset(n_images=24, size_px=64, seed=0)


def test_shapes_types_and_labels(dataset) -> None:
    mask_set, labels = dataset
    assert len(mask_set) == 24 and labels.shape == (24,) and labels.dtype == np.int32
    assert labels.tolist() == [1, 2] * 12
    assert all(image.shape == (64, 64, 3) and image.dtype == np.uint8 for image in mask_set.images)
    assert all(mask.shape == (64, 64) and mask.dtype == np.uint8 for mask in mask_set.masks)
    assert mask_set.names[:2] == ["synthetic_0000", "synthetic_0001"]
    mask_set.validate(3)
    assert SYNTHETIC_CLASS_NAMES == ("background", "benign gland", "malignant gland")


def test_mask_of_label_k_holds_only_background_and_k(dataset) -> None:
    mask_set, labels = dataset
    for mask, label in zip(mask_set.masks, labels):
        assert set(np.unique(mask).tolist()) == {0, int(label)}
    counts = mask_set.class_pixel_counts(3)
    assert (counts > 0).all()


def test_deterministic_for_a_seed_and_different_for_another() -> None:
    a, labels_a = make_synthetic_dataset(n_images=6, size_px=64, seed=3)
    b, labels_b = make_synthetic_dataset(n_images=6, size_px=64, seed=3)
    c, _ = make_synthetic_dataset(n_images=6, size_px=64, seed=4)
    np.testing.assert_array_equal(labels_a, labels_b)
    for x, y in zip(a.images + a.masks, b.images + b.masks):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.images[0], c.images[0])
    # Image i depends only on (seed, i): a longer set starts with the same images.
    longer, _ = make_synthetic_dataset(n_images=8, size_px=64, seed=3)
    np.testing.assert_array_equal(longer.masks[5], a.masks[5])


def test_the_two_kinds_look_different(dataset) -> None:
    """Malignant glands are larger and darker; both kinds have a pale lumen."""
    mask_set, labels = dataset
    gland_fraction = {1: [], 2: []}
    gland_brightness = {1: [], 2: []}
    for image, mask, label in zip(mask_set.images, mask_set.masks, labels):
        gland = mask > 0
        gland_fraction[int(label)].append(gland.mean())
        gland_brightness[int(label)].append(image[gland].mean())
    assert np.mean(gland_fraction[2]) > np.mean(gland_fraction[1])
    assert max(gland_brightness[2]) < min(gland_brightness[1])


def test_gland_pixels_are_not_separable_by_colour_alone(dataset) -> None:
    """Pale lumen overlaps white background, so a model needs context, not one pixel."""
    mask_set, _ = dataset
    pale_gland = pale_background = 0
    for image, mask in zip(mask_set.images, mask_set.masks):
        pale = image.min(axis=2) > 225
        pale_gland += int((pale & (mask > 0)).sum())
        pale_background += int((pale & (mask == 0)).sum())
    assert pale_gland > 0 and pale_background > 0


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="n_images must be a positive int, got 0"):
        make_synthetic_dataset(n_images=0)
    with pytest.raises(ConfigError, match="size_px must be an int of at least 32, got 16"):
        make_synthetic_dataset(size_px=16)
