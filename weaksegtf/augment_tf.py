"""``tf.data`` wrappers around :class:`weaksegtf.augment.Augmenter`.

The augmentation itself is numpy and OpenCV (so slide code never imports
TensorFlow); :func:`tf.numpy_function` runs it inside a ``tf.data`` pipeline,
and the static shapes are restored afterwards so batching still works.

Example:
>>> dataset = dataset.map(tf_augment, num_parallel_calls=tf.data.AUTOTUNE)  # doctest: +SKIP
>>> labels = labels.map(lambda image, label: (tf_augment_colour(image), label))  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from weaksegtf.augment import Augmenter

_DEFAULT: Augmenter | None = None


def _default_augmenter() -> Augmenter:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Augmenter()
    return _DEFAULT


def tf_augment(
    image: tf.Tensor, mask: tf.Tensor, augmenter: Augmenter | None = None
) -> tuple[tf.Tensor, tf.Tensor]:
    """Augment an ``(H, W, 3)`` image and its ``(H, W)`` mask inside ``tf.data``.

    Args:
        image: tf.Tensor. uint8 or float RGB, ``(H, W, 3)``.
        mask: tf.Tensor. uint8 class indices, ``(H, W)`` (or ``(H, W, 1)``).
        augmenter: Augmenter, optional. Defaults to a shared ``Augmenter()``.

    Returns:
        ``(image, mask)`` with the input dtypes and static shapes.
    """
    augmenter = augmenter or _default_augmenter()

    def run(image_np: np.ndarray, mask_np: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out_image, out_mask = augmenter(image_np, mask_np)
        return np.ascontiguousarray(out_image), np.ascontiguousarray(out_mask)

    out_image, out_mask = tf.numpy_function(
        run, [image, mask], [image.dtype, mask.dtype], stateful=True
    )
    out_image.set_shape(image.shape)
    out_mask.set_shape(mask.shape)
    return out_image, out_mask


def tf_augment_colour(image: tf.Tensor, augmenter: Augmenter | None = None) -> tf.Tensor:
    """Colour augmentation of an ``(H, W, 3)`` label patch inside ``tf.data``."""
    augmenter = augmenter or _default_augmenter()

    def run(image_np: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(augmenter.augment_colour(image_np))

    (out_image,) = tf.numpy_function(run, [image], [image.dtype], stateful=True)
    out_image.set_shape(image.shape)
    return out_image
