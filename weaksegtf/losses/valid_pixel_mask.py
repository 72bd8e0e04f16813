"""The "mask of valid pixels" of Bokhorst et al. (2018), and cross-entropy under a weight map.

Bokhorst et al., section 3: a weight map ``W`` gives each pixel's loss
``l_ij`` a coefficient, ``l^_ij = w_ij l_ij``. Without balancing, ``w_ij`` is
1 on annotated pixels and 0 on the others (their label 0; ours 255). The two
balancing schemes (eqs. 1 and 2, in ``instance_balanced_cross_entropy`` and
``minibatch_balanced_cross_entropy``) build other maps on top of this one.
"""

from __future__ import annotations

import keras
from keras import ops

from weaksegtf.constants import IGNORE_VALUE


def _labels(y_true, logits):
    """Integer labels ``(B, H, W)`` from ``(B, H, W)`` or ``(B, H, W, 1)``."""
    y_true = ops.cast(ops.convert_to_tensor(y_true), "int32")
    if logits is not None and len(y_true.shape) == len(logits.shape):
        y_true = ops.squeeze(y_true, axis=-1)
    return y_true


def valid_pixel_mask(y_true, ignore_value: int = IGNORE_VALUE):
    """``w_ij`` = 1 where the pixel is annotated, 0 where it equals ``ignore_value``.

    Bokhorst et al., section 3, "Mask of valid pixels, no balancing".

    Args:
        y_true: integer class indices ``(B, H, W)``.
        ignore_value: int. Label value meaning "not annotated". Defaults to ``255``.

    Returns:
        float32 tensor of ``y_true``'s shape.

    Example:
    >>> valid_pixel_mask(np.array([[0, 255], [2, 1]])).numpy().tolist()
    [[1.0, 0.0], [1.0, 1.0]]
    """
    y_true = ops.convert_to_tensor(y_true)
    return ops.cast(ops.not_equal(ops.cast(y_true, "int32"), ignore_value), "float32")


def valid_one_hot(y_true, num_classes: int, ignore_value: int = IGNORE_VALUE):
    """One-hot ``(B, H, W, C)`` of the annotated pixels; all zeros where not annotated."""
    y_true = ops.cast(ops.convert_to_tensor(y_true), "int32")
    valid = ops.not_equal(y_true, ignore_value)
    one_hot = ops.one_hot(ops.where(valid, y_true, 0), num_classes, dtype="float32")
    return one_hot * ops.cast(valid, "float32")[..., None]


def weight_map_cross_entropy(y_true, logits, weight_map, ignore_value: int = IGNORE_VALUE):
    """``sum_ij w_ij l_ij / L_B``: pixelwise cross-entropy under a weight map.

    ``l_ij`` is the cross-entropy of pixel ``(i, j)`` (Bokhorst et al.,
    section 3: ``l^_ij = w_ij l_ij``) and ``L_B`` the number of valid
    (annotated) pixels in the batch. For all three of the paper's maps the
    weights sum to ``L_B`` (each patch's balanced weights sum to its own
    valid-pixel count), so this is also the weighted mean ``sum w l / sum w``,
    and the loss keeps the scale of plain cross-entropy. A batch without a
    valid pixel gives 0, not NaN.

    Args:
        y_true: integer class indices ``(B, H, W)`` or ``(B, H, W, 1)``.
        logits: unnormalised scores ``(B, H, W, C)``.
        weight_map: float ``(B, H, W)``; should be 0 where ``y_true`` is ``ignore_value``.
        ignore_value: int. Label value meaning "not annotated". Defaults to ``255``.
    """
    logits = ops.convert_to_tensor(logits)
    y_true = _labels(y_true, logits)
    valid = ops.not_equal(y_true, ignore_value)
    per_pixel = ops.sparse_categorical_crossentropy(ops.where(valid, y_true, 0), logits, from_logits=True)
    weights = ops.cast(weight_map, per_pixel.dtype) * ops.cast(valid, per_pixel.dtype)
    n_valid = ops.sum(ops.cast(valid, per_pixel.dtype))
    return ops.sum(weights * per_pixel) / ops.maximum(n_valid, 1.0)


class WeightMapLoss(keras.losses.Loss):
    """Base of the serializable sparse-annotation losses: ``loss_fn(y_true, logits, ignore_value)``.

    Subclasses set ``loss_fn`` (a staticmethod) and ``default_name`` and are
    registered with Keras under their own names; this class holds the
    ``ignore_value`` setting, the ``"sum"`` reduction (the functions already
    divide by the valid-pixel count) and the config round trip.

    Args:
        ignore_value: int. Label value meaning "not annotated". Defaults to ``255``.
    """

    default_name = "weight_map_cross_entropy"

    @staticmethod
    def loss_fn(y_true, logits, ignore_value):
        raise NotImplementedError

    def __init__(self, ignore_value: int = IGNORE_VALUE, name=None, **kwargs):
        kwargs.setdefault("reduction", "sum")
        super().__init__(name=name or self.default_name, **kwargs)
        self.ignore_value = ignore_value

    def call(self, y_true, y_pred):
        return self.loss_fn(y_true, y_pred, self.ignore_value)

    def get_config(self) -> dict:
        config = super().get_config()
        config["ignore_value"] = self.ignore_value
        return config
