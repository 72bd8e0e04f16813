"""Mini-batch-based loss balancing for sparse annotations, Bokhorst et al. (2018), eq. 2."""

from __future__ import annotations

import keras
from keras import ops

from weaksegtf.losses.instance_balanced_cross_entropy import balancing_weights
from weaksegtf.losses.valid_pixel_mask import WeightMapLoss, _labels, valid_one_hot, weight_map_cross_entropy
from weaksegtf.constants import IGNORE_VALUE


def minibatch_class_counts(y_true, num_classes: int, ignore_value: int = IGNORE_VALUE):
    """Annotated pixels of each class over the batch, float32 ``(C,)``: the ``C_ij`` of eq. 2.

    Under ``tf.distribute`` the model sums them over the replicas, so that
    eq. 2 balances the global batch, as on one device.

    Example:
    >>> minibatch_class_counts(np.array([[[0, 0]], [[0, 255]]]), 2).numpy().tolist()
    [3.0, 0.0]
    """
    return ops.sum(valid_one_hot(y_true, num_classes, ignore_value), axis=(0, 1, 2))


def minibatch_balancing_weights(y_true, num_classes: int, ignore_value: int = IGNORE_VALUE, class_counts=None):
    """Weight map of eq. 2 (Bokhorst et al. 2018): ``w_ij = L_B / (C_B C_ij)`` over the batch.

    As eq. 1, but counted over the whole mini-batch: ``L_B`` valid pixels,
    ``C_B`` classes present, and ``C_ij`` the batch's pixels of the class at
    ``(i, j)``. A class that appears in one patch only then weighs as much as
    one that appears in all of them.

    Args:
        y_true: integer class indices ``(B, H, W)``; ``ignore_value`` = not annotated.
        num_classes: int. Number of classes C.
        ignore_value: int. Defaults to ``255``.
        class_counts: float ``(C,)``, optional. The batch's counts per class
            (:func:`minibatch_class_counts`), when the batch is larger than
            ``y_true`` (the global batch of a ``tf.distribute`` replica).
            Defaults to ``None``: those of ``y_true``.

    Returns:
        float32 ``(B, H, W)``.

    Example:
    >>> minibatch_balancing_weights(np.array([[[0, 0]], [[0, 1]]]), 2).numpy().tolist()
    [[[0.6666666865348816, 0.6666666865348816]], [[0.6666666865348816, 2.0]]]
    """
    one_hot = valid_one_hot(y_true, num_classes, ignore_value)  # (B, H, W, C)
    if class_counts is None:
        class_counts = ops.sum(one_hot, axis=(0, 1, 2))
    counts = ops.cast(class_counts, one_hot.dtype)[None]  # (1, C): C_ij for each class over the batch
    return balancing_weights(counts, one_hot)


def minibatch_balanced_cross_entropy(y_true, logits, ignore_value: int = IGNORE_VALUE, class_counts=None):
    """Cross-entropy under the eq. 2 weight map, divided by the batch's valid-pixel count.

    See :func:`weaksegtf.losses.valid_pixel_mask.weight_map_cross_entropy`. A
    batch without a valid pixel gives 0. ``class_counts``: see
    :func:`minibatch_balancing_weights`.
    """
    logits = ops.convert_to_tensor(logits)
    y_true = _labels(y_true, logits)
    weights = minibatch_balancing_weights(y_true, logits.shape[-1], ignore_value, class_counts)
    return weight_map_cross_entropy(y_true, logits, weights, ignore_value)


@keras.saving.register_keras_serializable(package="weaksegtf")
class MinibatchBalancedCrossEntropy(WeightMapLoss):
    """Serializable wrapper of :func:`minibatch_balanced_cross_entropy` (Bokhorst et al. 2018, eq. 2).

    Args:
        ignore_value: int. Label value meaning "not annotated". Defaults to ``255``.

    Example:
    >>> loss = MinibatchBalancedCrossEntropy()
    >>> float(loss(np.zeros((1, 2, 2)), np.zeros((1, 2, 2, 2))))
    0.6931...
    """

    default_name = "minibatch_balanced_cross_entropy"
    loss_fn = staticmethod(minibatch_balanced_cross_entropy)
