"""Instance-based loss balancing for sparse annotations, Bokhorst et al. (2018), eq. 1."""

from __future__ import annotations

import keras
from keras import ops

from weaksegtf.losses.valid_pixel_mask import WeightMapLoss, _labels, valid_one_hot, weight_map_cross_entropy
from weaksegtf.constants import IGNORE_VALUE


def balancing_weights(class_counts, one_hot):
    """``w = L / (C * C_ij)`` from per-class counts ``(..., C)`` and a one-hot map.

    ``L`` is the number of valid pixels (the counts' sum), ``C`` the number of
    classes present (non-zero counts) and ``C_ij`` the count of pixel
    ``(i, j)``'s class. Shared by eqs. 1 and 2, which differ only in the pixels
    they count over. Absent classes get weight 0 (no pixel carries them), so
    nothing divides by zero.
    """
    present = ops.cast(class_counts > 0, "float32")
    total = ops.sum(class_counts, axis=-1, keepdims=True)  # L
    n_present = ops.sum(present, axis=-1, keepdims=True)  # C
    per_class = ops.divide_no_nan(total, n_present * class_counts)  # L / (C * C_ij), 0 if absent
    return ops.sum(one_hot * per_class[..., None, None, :], axis=-1)


def instance_balancing_weights(y_true, num_classes: int, ignore_value: int = IGNORE_VALUE):
    """Weight map of eq. 1 (Bokhorst et al. 2018): ``w_ij = L_I / (C_I C_ij)`` per patch.

    ``L_I`` is the number of valid pixels of the patch, ``C_I`` the number of
    classes present in it and ``C_ij`` the number of the patch's pixels of the
    class at ``(i, j)``; ``w_ij = 0`` where the pixel is not annotated. Every
    class present in a patch then weighs ``L_I / C_I`` in total.

    Args:
        y_true: integer class indices ``(B, H, W)``; ``ignore_value`` = not annotated.
        num_classes: int. Number of classes C.
        ignore_value: int. Defaults to ``255``.

    Returns:
        float32 ``(B, H, W)``.

    Example:
    >>> instance_balancing_weights(np.array([[[0, 0, 0, 1]]]), 2).numpy().tolist()
    [[[0.6666666865348816, 0.6666666865348816, 0.6666666865348816, 2.0]]]
    """
    one_hot = valid_one_hot(y_true, num_classes, ignore_value)  # (B, H, W, C)
    counts = ops.sum(one_hot, axis=(1, 2))  # (B, C): C_ij for each class of each patch
    return balancing_weights(counts, one_hot)


def instance_balanced_cross_entropy(y_true, logits, ignore_value: int = IGNORE_VALUE):
    """Cross-entropy under the eq. 1 weight map, divided by the batch's valid-pixel count.

    See :func:`weaksegtf.losses.valid_pixel_mask.weight_map_cross_entropy`. A
    batch without a valid pixel gives 0.
    """
    logits = ops.convert_to_tensor(logits)
    y_true = _labels(y_true, logits)
    weights = instance_balancing_weights(y_true, logits.shape[-1], ignore_value)
    return weight_map_cross_entropy(y_true, logits, weights, ignore_value)


@keras.saving.register_keras_serializable(package="weaksegtf")
class InstanceBalancedCrossEntropy(WeightMapLoss):
    """Serializable wrapper of :func:`instance_balanced_cross_entropy` (Bokhorst et al. 2018, eq. 1).

    Args:
        ignore_value: int. Label value meaning "not annotated". Defaults to ``255``.

    Example:
    >>> loss = InstanceBalancedCrossEntropy()
    >>> float(loss(np.zeros((1, 2, 2)), np.zeros((1, 2, 2, 2))))
    0.6931...
    """

    default_name = "instance_balanced_cross_entropy"
    loss_fn = staticmethod(instance_balanced_cross_entropy)
