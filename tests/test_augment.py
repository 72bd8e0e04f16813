"""Augmentation keeps image and mask aligned, in numpy and inside tf.data."""

from __future__ import annotations

import numpy as np
import pytest

from weaksegtf.augment import Augmenter
from weaksegtf.errors import ConfigError, DataError

GEOMETRY_ONLY = dict(colour=False, elastic_probability=1.0, elastic_magnitude_px=4.0)


@pytest.fixture
def mask() -> np.ndarray:
    """Blocks of classes 0, 1, 2 and an unannotated (255) corner, not symmetric."""
    mask = np.zeros((64, 64), np.uint8)
    mask[5:30, 10:50] = 1
    mask[35:60, 20:40] = 2
    mask[:8, 56:] = 255
    return mask


def as_image(mask: np.ndarray) -> np.ndarray:
    return np.repeat(mask[:, :, None], 3, axis=2)


@pytest.mark.parametrize("seed", range(6))
def test_image_equal_to_its_mask_stays_equal(mask, seed):
    # With nearest resampling for both, every transform moves them identically.
    augmenter = Augmenter(seed=seed, image_interpolation="nearest", **GEOMETRY_ONLY)
    image, out_mask = augmenter(as_image(mask), mask)
    assert out_mask.dtype == np.uint8 and out_mask.shape == (64, 64)
    np.testing.assert_array_equal(image[:, :, 0], out_mask)
    np.testing.assert_array_equal(image[:, :, 1], out_mask)
    assert set(np.unique(out_mask)) <= {0, 1, 2, 255}  # no invented classes


def test_linear_image_resampling_stays_aligned_off_the_edges(mask):
    augmenter = Augmenter(seed=0, **GEOMETRY_ONLY)
    image, out_mask = augmenter(as_image(mask), mask)
    # Linear interpolation blends only across class borders.
    agree = image[:, :, 0] == out_mask
    assert agree.mean() > 0.9
    assert 255 in out_mask  # the not-annotated value survives


def test_geometry_actually_changes_things(mask):
    outputs = {Augmenter(seed=s, colour=False)(as_image(mask), mask)[1].tobytes() for s in range(8)}
    assert len(outputs) > 3


def test_flips_and_rotations_alone_are_exact_permutations(mask):
    augmenter = Augmenter(seed=1, colour=False, elastic_probability=0.0)
    image, out_mask = augmenter(as_image(mask), mask)
    np.testing.assert_array_equal(image[:, :, 0], out_mask)
    assert sorted(out_mask.ravel().tolist()) == sorted(mask.ravel().tolist())


def test_colour_changes_image_not_mask(mask):
    rng = np.random.default_rng(0)
    image = rng.integers(60, 200, size=(64, 64, 3), dtype=np.uint8)
    augmenter = Augmenter(seed=0, geometric=False, blur_probability=1.0)
    out_image, out_mask = augmenter(image, mask)
    np.testing.assert_array_equal(out_mask, mask)
    assert out_image.dtype == np.uint8 and out_image.shape == image.shape
    assert np.abs(out_image.astype(int) - image).mean() > 1


def test_label_patches_get_the_same_colour_augmentation():
    image = np.random.default_rng(1).integers(60, 200, size=(32, 32, 3), dtype=np.uint8)
    # Same seed, same draws: colour of a label patch equals the colour step of a pair.
    by_pair, _ = Augmenter(seed=5, geometric=False)(image, None)
    by_label = Augmenter(seed=5, geometric=False).augment_colour(image)
    np.testing.assert_array_equal(by_pair, by_label)


def test_float_images_keep_their_range_and_type():
    image = np.random.default_rng(2).uniform(0.2, 0.8, size=(32, 32, 3)).astype(np.float32)
    out = Augmenter(seed=0).augment_colour(image)
    assert out.dtype == np.float32 and 0.0 <= out.min() and out.max() <= 1.0
    out255 = Augmenter(seed=0).augment_colour(image * 255.0)
    np.testing.assert_allclose(out255 / 255.0, out, atol=1e-4)


def test_non_square_images_keep_their_shape():
    augmenter = Augmenter(seed=0)
    for _ in range(6):
        image, mask = augmenter(np.zeros((32, 48, 3), np.uint8), np.zeros((32, 48), np.uint8))
        assert image.shape == (32, 48, 3) and mask.shape == (32, 48)


def test_seeded_augmenters_repeat_and_config_round_trips(mask):
    first = Augmenter(seed=9)(as_image(mask), mask)
    second = Augmenter(seed=9)(as_image(mask), mask)
    np.testing.assert_array_equal(first[0], second[0])
    augmenter = Augmenter(seed=9, hue_shift_deg=3.0)
    assert Augmenter(**augmenter.get_config()) == augmenter


def test_bad_inputs():
    with pytest.raises(DataError, match=r"mask has shape \(8, 9\) but image is \(8, 8, 3\)"):
        Augmenter()(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9), np.uint8))
    with pytest.raises(DataError, match=r"expected \(H, W, 3\)"):
        Augmenter().augment_colour(np.zeros((8, 8), np.uint8))
    with pytest.raises(ConfigError, match="image_interpolation"):
        Augmenter(image_interpolation="cubic")


def test_tf_augment_in_a_tf_data_pipeline(mask):
    tf = pytest.importorskip("tensorflow")
    from weaksegtf.augment_tf import tf_augment, tf_augment_colour

    augmenter = Augmenter(seed=0, image_interpolation="nearest", **GEOMETRY_ONLY)
    images = np.stack([as_image(mask), as_image(mask[::-1].copy())])
    masks = np.stack([mask, mask[::-1].copy()])
    dataset = tf.data.Dataset.from_tensor_slices((images, masks))
    dataset = dataset.map(lambda i, m: tf_augment(i, m, augmenter)).batch(2)
    assert dataset.element_spec[0].shape.as_list() == [None, 64, 64, 3]
    assert dataset.element_spec[1].shape.as_list() == [None, 64, 64]
    image_batch, mask_batch = next(iter(dataset))
    assert image_batch.dtype == tf.uint8 and mask_batch.dtype == tf.uint8
    np.testing.assert_array_equal(image_batch.numpy()[..., 0], mask_batch.numpy())

    floats = tf.data.Dataset.from_tensor_slices(images.astype(np.float32) / 255.0)
    floats = floats.map(lambda i: tf_augment_colour(i)).batch(2)
    out = next(iter(floats))
    assert out.dtype == tf.float32 and out.shape == (2, 64, 64, 3)
