"""Pixels of an image-level-labelled image may only be background or the image's class.

Ciga & Martel (Discussion) require of image-level data that "the majority of the
pixels on the patch are either background or the foreground class assigned to
that patch". Their classifier uses that only through the pooled segmentation; this
loss states it per pixel: the probability of every other class is pushed down. It
is the set-valued ("partial label") cross-entropy ``-log sum_{c in A(y)} p_c`` with
the allowed set ``A(y) = {background, y}``, a standard way of using image-level
labels as constraints on a segmentation (e.g. Pathak et al., "Constrained
Convolutional Neural Networks for Weakly Supervised Segmentation", ICCV 2015).
"""

from __future__ import annotations

import keras
from keras import ops


def allowed_class_cross_entropy(labels, logits, valid=None, background: int = 0):
    """Mean over real pixels of ``-log(p_background + p_label)``.

    Args:
        labels: int ``(B,)`` image-level labels.
        logits: float ``(B, h, w, C)`` segmentation logits.
        valid: optional float ``(B, h, w)``: weight of each pixel (the share of
            real, not padded, pixels in it). Defaults to all ones.
        background: int. The background class. Defaults to ``0``.

    Example:
    >>> float(allowed_class_cross_entropy(np.array([1]), np.zeros((1, 1, 1, 3))))  # -log(2/3)
    0.405...
    """
    logits = ops.convert_to_tensor(logits)
    num_classes = logits.shape[-1]
    labels = ops.cast(ops.reshape(labels, (-1,)), "int32")
    allowed = ops.maximum(ops.one_hot(labels, num_classes), ops.one_hot(ops.full_like(labels, background), num_classes))
    log_p = ops.log_softmax(logits, axis=-1)
    # log sum_{c in A} p_c, stably: logsumexp over the allowed classes only.
    masked = ops.where(ops.cast(allowed[:, None, None, :], "bool"), log_p, ops.full_like(log_p, -1e9))
    per_pixel = -ops.logsumexp(masked, axis=-1)
    weights = ops.ones_like(per_pixel) if valid is None else ops.cast(valid, per_pixel.dtype)
    return ops.sum(per_pixel * weights) / ops.maximum(ops.sum(weights), keras.backend.epsilon())


def present_class_size_loss(labels, logits, valid=None, min_share: float = 0.1, background: int = 0):
    """Mean over foreground-labelled images of ``max(0, log(min_share) - log(share of y))``.

    The other half of Pathak et al.'s constraints for image-level labels: a
    class the image is labelled with is *present*, so its expected share of the
    image's real pixels, ``mean_pixels p_y``, should be at least ``min_share``.
    Without it, "background or y" is also satisfied by painting the whole image
    background. Background-labelled items add nothing (their allowed set is
    background alone). The log makes the penalty's gradient, while violated,
    that of a cross-entropy on the share.

    Args:
        labels: int ``(B,)`` image-level labels.
        logits: float ``(B, h, w, C)`` segmentation logits.
        valid: optional float ``(B, h, w)``: weight of each pixel. Defaults to all ones.
        min_share: float in (0, 1]. Smallest expected share of the labelled class.
        background: int. The background class. Defaults to ``0``.

    Example:
    >>> float(present_class_size_loss(np.array([1]), np.zeros((1, 1, 1, 3)), min_share=0.5))  # log(0.5 / (1/3))
    0.405...
    """
    logits = ops.convert_to_tensor(logits)
    num_classes = logits.shape[-1]
    labels = ops.cast(ops.reshape(labels, (-1,)), "int32")
    probabilities = ops.softmax(logits, axis=-1)
    one_hot = ops.cast(ops.one_hot(labels, num_classes), probabilities.dtype)
    p_label = ops.sum(probabilities * one_hot[:, None, None, :], axis=-1)
    weights = ops.ones_like(p_label) if valid is None else ops.cast(valid, p_label.dtype)
    share = ops.sum(p_label * weights, axis=(1, 2)) / ops.maximum(ops.sum(weights, axis=(1, 2)), keras.backend.epsilon())
    floor = ops.log(ops.cast(min_share, share.dtype))
    penalty = ops.relu(floor - ops.log(ops.maximum(share, keras.backend.epsilon())))
    foreground = ops.cast(ops.not_equal(labels, background), penalty.dtype)
    return ops.sum(penalty * foreground) / ops.maximum(ops.sum(foreground), 1.0)
