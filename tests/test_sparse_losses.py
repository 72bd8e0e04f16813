"""Sparse-annotation losses of Bokhorst et al. (2018): valid-pixel mask, instance and mini-batch balancing."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from weaksegtf.errors import ConfigError, DataError
from weaksegtf.losses import (
    InstanceBalancedCrossEntropy,
    MinibatchBalancedCrossEntropy,
    instance_balanced_cross_entropy,
    instance_balancing_weights,
    minibatch_balanced_cross_entropy,
    minibatch_balancing_weights,
    valid_pixel_mask,
    weighted_cross_entropy,
)
from weaksegtf.models import WeakSegmenter
from weaksegtf.training import train_weak_segmenter

N = 255  # not annotated
# Two 4x4 patches. Patch 0: five pixels of class 0, two of class 1 (L_I = 7, C_I = 2).
# Patch 1: two pixels of class 2, one of class 0 (L_I = 3, C_I = 2).
# Batch: class 0 x6, class 1 x2, class 2 x2 (L_B = 10, C_B = 3).
MASKS = np.array(
    [
        [[0, 0, 0, N],
         [0, 0, N, N],
         [1, 1, N, N],
         [N, N, N, N]],
        [[2, 2, N, N],
         [N, N, N, N],
         [0, N, N, N],
         [N, N, N, N]],
    ],
    np.int32,
)


def test_valid_pixel_mask_is_one_on_annotated_pixels_only():
    expected = (MASKS != N).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(valid_pixel_mask(MASKS)), expected)


def test_instance_balancing_weights_by_hand():
    # Eq. 1, w = L_I / (C_I * C_ij):
    # patch 0: class 0 -> 7 / (2 * 5) = 0.7, class 1 -> 7 / (2 * 2) = 1.75;
    # patch 1: class 2 -> 3 / (2 * 2) = 0.75, class 0 -> 3 / (2 * 1) = 1.5.
    a, b, c, d = 0.7, 1.75, 0.75, 1.5
    expected = np.array(
        [
            [[a, a, a, 0], [a, a, 0, 0], [b, b, 0, 0], [0, 0, 0, 0]],
            [[c, c, 0, 0], [0, 0, 0, 0], [d, 0, 0, 0], [0, 0, 0, 0]],
        ],
        np.float32,
    )
    weights = np.asarray(instance_balancing_weights(MASKS, num_classes=3))
    np.testing.assert_allclose(weights, expected, rtol=1e-6)
    # Every class present in a patch weighs L_I / C_I, so a patch's weights sum to L_I.
    np.testing.assert_allclose(weights.sum(axis=(1, 2)), [7, 3], rtol=1e-6)


def test_minibatch_balancing_weights_by_hand():
    # Eq. 2, w = L_B / (C_B * C_ij): class 0 -> 10 / (3 * 6) = 5/9, classes 1 and 2 -> 10 / (3 * 2) = 5/3.
    a, b = 5 / 9, 5 / 3
    expected = np.array(
        [
            [[a, a, a, 0], [a, a, 0, 0], [b, b, 0, 0], [0, 0, 0, 0]],
            [[b, b, 0, 0], [0, 0, 0, 0], [a, 0, 0, 0], [0, 0, 0, 0]],
        ],
        np.float32,
    )
    weights = np.asarray(minibatch_balancing_weights(MASKS, num_classes=3))
    np.testing.assert_allclose(weights, expected, rtol=1e-6)
    assert weights.sum() == pytest.approx(10.0)


def test_balanced_losses_equal_the_weighted_mean_of_pixel_cross_entropy():
    logits = np.random.default_rng(1).normal(0, 2, (2, 4, 4, 3)).astype("float32")
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    safe = np.where(MASKS == N, 0, MASKS)
    ce = -np.take_along_axis(log_p, safe[..., None], -1)[..., 0]
    for loss_fn, weight_fn in [
        (instance_balanced_cross_entropy, instance_balancing_weights),
        (minibatch_balanced_cross_entropy, minibatch_balancing_weights),
    ]:
        w = np.asarray(weight_fn(MASKS, 3))
        expected = (w * ce).sum() / 10.0  # divided by L_B, which is also sum(w)
        assert float(loss_fn(MASKS, logits)) == pytest.approx(expected, rel=1e-5)
    # No balancing: the mean over valid pixels.
    assert float(weighted_cross_entropy(MASKS, logits)) == pytest.approx(ce[MASKS != N].mean(), rel=1e-5)


def test_dense_patches_with_equal_class_areas_weigh_every_pixel_one():
    masks = np.zeros((2, 4, 4), np.int32)
    masks[:, :, 2:] = 1
    for weight_fn in (instance_balancing_weights, minibatch_balancing_weights):
        np.testing.assert_allclose(np.asarray(weight_fn(masks, 2)), np.ones((2, 4, 4)), rtol=1e-6)


def test_a_batch_without_valid_pixels_gives_zero_loss_and_zero_gradients():
    masks = np.full((2, 4, 4), N, np.int32)
    logits = tf.Variable(np.random.default_rng(2).normal(size=(2, 4, 4, 3)).astype("float32"))
    for loss_fn in (instance_balanced_cross_entropy, minibatch_balanced_cross_entropy):
        with tf.GradientTape() as tape:
            loss = loss_fn(masks, logits)
        grad = tape.gradient(loss, logits)
        assert float(loss) == 0.0
        assert np.all(np.isfinite(grad.numpy())) and not np.any(grad.numpy())
    for weight_fn in (instance_balancing_weights, minibatch_balancing_weights):
        assert not np.any(np.asarray(weight_fn(masks, 3)))


@pytest.mark.parametrize("cls, fn", [
    (InstanceBalancedCrossEntropy, instance_balanced_cross_entropy),
    (MinibatchBalancedCrossEntropy, minibatch_balanced_cross_entropy),
])
def test_keras_classes_serialize_and_match_the_functions(cls, fn):
    logits = np.random.default_rng(3).normal(size=(2, 4, 4, 3)).astype("float32")
    loss = cls(ignore_value=N)
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(restored, cls) and restored.get_config() == loss.get_config()
    assert float(restored(MASKS[..., None], logits)) == pytest.approx(float(fn(MASKS, logits)), rel=1e-6)


def test_segmentation_loss_is_kept_in_the_model_config_and_used():
    model = WeakSegmenter(num_classes=3, segmentation_loss="instance_balanced")
    assert model.get_config()["segmentation_loss"] == "instance_balanced"
    assert WeakSegmenter.from_config(model.get_config()).segmentation_loss == "instance_balanced"
    logits = np.random.default_rng(4).normal(size=(2, 4, 4, 3)).astype("float32")
    assert float(model.pixel_loss(MASKS, logits)) == pytest.approx(float(instance_balanced_cross_entropy(MASKS, logits)))


@pytest.mark.parametrize("kwargs, message", [
    ({"segmentation_loss": "focal"}, "segmentation_loss 'focal' is unknown"),
    ({"segmentation_loss": "minibatch_balanced", "class_weights": [1, 2, 3]},
     "class_weights apply to segmentation_loss='weighted_ce' only"),
])
def test_bad_loss_settings_are_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        WeakSegmenter(num_classes=3, **kwargs)


def test_a_mask_value_that_is_neither_a_class_nor_255_is_refused_before_tensorflow():
    images = np.zeros((2, 32, 32, 3), np.uint8)
    masks = np.full((2, 32, 32), N, np.uint8)
    masks[1, 5, 5] = 7
    with pytest.raises(DataError, match="mask set: mask value 7 is out of range for 3 classes"):
        train_weak_segmenter(images, masks, None, None, num_classes=3, mode="S", segmentation_loss="minibatch_balanced")
