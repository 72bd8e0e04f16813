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
