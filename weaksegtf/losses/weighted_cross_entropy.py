"""Class-weighted pixelwise cross-entropy with a "not annotated" value.

Ciga & Martel, section 2.3: "weighted cross entropy loss function with weights
[derived from] the pixelwise class distributions among training images", applied
pixelwise for segmentation.
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
from keras import ops

from weaksegtf.constants import IGNORE_VALUE



def class_weights_from_counts(pixel_counts: Sequence[int] | np.ndarray) -> np.ndarray:
    """Inverse-frequency class weights, normalised so the average pixel weighs 1.

    ``w_c = N / (K * n_c)`` where ``n_c`` is the pixel count of class ``c``, ``N``
    the total and ``K`` the number of classes present. A frequent class (usually
    background) is down-weighted and a rare one up-weighted, which is how the
    paper's weights counter class imbalance. Absent classes get weight 1: no
    pixel carries them, so the value only matters if the masks change.

    Example:
    >>> class_weights_from_counts([30, 10, 0]).tolist()
    [0.6666666666666666, 2.0, 1.0]
    """
    counts = np.asarray(pixel_counts, dtype=np.float64)
    present = counts > 0
    if not present.any():
        return np.ones_like(counts)
    weights = np.ones_like(counts)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights


def weighted_cross_entropy(
    y_true, logits, class_weights=None, ignore_value: int = IGNORE_VALUE
):
    """Mean class-weighted cross-entropy over annotated pixels.

    ``L = sum_i w[y_i] * CE_i / sum_i w[y_i]`` over pixels with
    ``y_i != ignore_value``: the semantics of PyTorch's
    ``CrossEntropyLoss(weight=w, ignore_index=255)``, which the paper's code uses.
    A batch without any annotated pixel gives 0, never NaN.

    Args:
        y_true: integer class indices, shape ``(..., H, W)`` or ``(..., H, W, 1)``.
        logits: unnormalised scores, shape ``(..., H, W, C)``.
        class_weights: optional sequence of C floats; ``None`` means all ones.
        ignore_value: int. Label value that contributes nothing. Defaults to ``255``.
    """
    logits = ops.convert_to_tensor(logits)
    y_true = ops.cast(ops.convert_to_tensor(y_true), "int32")
    if len(y_true.shape) == len(logits.shape):
        y_true = ops.squeeze(y_true, axis=-1)
    safe_labels = ops.where(ops.not_equal(y_true, ignore_value), y_true, 0)
    per_pixel = ops.sparse_categorical_crossentropy(safe_labels, logits, from_logits=True)
    weights = ops.cast(_weight_map(y_true, class_weights, ignore_value), per_pixel.dtype)
    total_weight = ops.sum(weights)
    return ops.sum(weights * per_pixel) / ops.maximum(total_weight, keras.backend.epsilon())


def annotated_weight(y_true, class_weights=None, ignore_value: int = IGNORE_VALUE):
    """``sum_i w[y_i]`` over the annotated items: the denominator of :func:`weighted_cross_entropy`.

    Under ``tf.distribute`` it gives each replica its share of the global
    batch's mean (:func:`weaksegtf.models.cross_replica.replica_part`).

    Example:
    >>> float(annotated_weight(np.array([[0, 1, 255]]), [0.5, 2.0]))
    2.5
    """
    y_true = ops.cast(ops.convert_to_tensor(y_true), "int32")
    return ops.sum(_weight_map(y_true, class_weights, ignore_value))


def _weight_map(y_true, class_weights, ignore_value: int):
    """float32 ``w[y_i]`` per item, 0 where ``y_i == ignore_value`` (all ones without ``class_weights``)."""
    valid = ops.cast(ops.not_equal(y_true, ignore_value), "float32")
    if class_weights is None:
        return valid
    safe_labels = ops.where(ops.not_equal(y_true, ignore_value), y_true, 0)
    weights = ops.convert_to_tensor(np.asarray(class_weights, dtype="float32"))
    return ops.take(weights, safe_labels) * valid


@keras.saving.register_keras_serializable(package="weaksegtf")
class WeightedCrossEntropy(keras.losses.Loss):
    """Serializable wrapper of :func:`weighted_cross_entropy`.

    Args:
        class_weights: list of float, optional. One weight per class. Defaults
            to ``None`` (all ones).
        ignore_value: int. Label value meaning "not annotated". Defaults to ``255``.

    Example:
    >>> loss = WeightedCrossEntropy(class_weights=[0.5, 2.0])
    >>> float(loss(np.zeros((1, 2, 2)), np.zeros((1, 2, 2, 2))))
    0.6931...
    """

    def __init__(self, class_weights=None, ignore_value: int = IGNORE_VALUE, name="weighted_cross_entropy", **kwargs):
        kwargs.setdefault("reduction", "sum")
        super().__init__(name=name, **kwargs)
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]
        self.ignore_value = ignore_value

    def call(self, y_true, y_pred):
        return weighted_cross_entropy(y_true, y_pred, self.class_weights, self.ignore_value)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"class_weights": self.class_weights, "ignore_value": self.ignore_value})
        return config
