"""Keras metrics for evaluation during training, all from one confusion matrix.

The numpy twins in ``weaksegtf.metrics.confusion`` compute the same numbers
outside TensorFlow; the tests check that both agree.
"""

from __future__ import annotations

import keras
from keras import ops

from weaksegtf.constants import IGNORE_VALUE



class _ConfusionMetric(keras.metrics.Metric):
    """Accumulates a C x C confusion matrix from masks and logits."""

    def __init__(self, num_classes: int, ignore_value: int = IGNORE_VALUE, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.ignore_value = ignore_value
        self.confusion = self.add_variable(
            shape=(num_classes, num_classes), initializer="zeros", dtype="float32", name="confusion"
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        y_pred = ops.cast(ops.reshape(ops.argmax(y_pred, axis=-1), (-1,)), "int32")
        valid = ops.not_equal(y_true, self.ignore_value)
        index = ops.where(valid, y_true * self.num_classes + y_pred, self.num_classes**2)
        counts = ops.bincount(index, minlength=self.num_classes**2 + 1)[: self.num_classes**2]
        counts = ops.reshape(ops.cast(counts, "float32"), (self.num_classes, self.num_classes))
        self.confusion.assign_add(counts)

    def reset_state(self):
        self.confusion.assign(ops.zeros_like(self.confusion))

    def _per_class(self, numerator_scale: float, include_tp_in_denominator: bool):
        tp = ops.diagonal(self.confusion)
        denominator = ops.sum(self.confusion, axis=0) + ops.sum(self.confusion, axis=1)
        if not include_tp_in_denominator:
            denominator = denominator - tp
        return numerator_scale * tp, denominator

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"num_classes": self.num_classes, "ignore_value": self.ignore_value})
        return config


@keras.saving.register_keras_serializable(package="weaksegtf")
class PixelAccuracy(_ConfusionMetric):
    """Share of annotated pixels whose argmax class is right."""

    def __init__(self, num_classes: int, ignore_value: int = IGNORE_VALUE, name="pixel_accuracy", **kwargs):
        super().__init__(num_classes, ignore_value, name=name, **kwargs)

    def result(self):
        return ops.divide_no_nan(ops.trace(self.confusion), ops.sum(self.confusion))


@keras.saving.register_keras_serializable(package="weaksegtf")
class MeanIoU(_ConfusionMetric):
    """Mean over classes present in truth or prediction of TP / (TP + FP + FN)."""

    def __init__(self, num_classes: int, ignore_value: int = IGNORE_VALUE, name="mean_iou", **kwargs):
        super().__init__(num_classes, ignore_value, name=name, **kwargs)

    def result(self):
        tp, denominator = self._per_class(1.0, include_tp_in_denominator=False)
        present = ops.cast(denominator > 0, "float32")
        iou = ops.divide_no_nan(tp, denominator)
        return ops.divide_no_nan(ops.sum(iou * present), ops.sum(present))


@keras.saving.register_keras_serializable(package="weaksegtf")
class DiceScore(_ConfusionMetric):
    """Dice of one class: 2 TP / (2 TP + FP + FN); 0 when the class is absent."""

    def __init__(self, num_classes: int, class_id: int, ignore_value: int = IGNORE_VALUE, name=None, **kwargs):
        super().__init__(num_classes, ignore_value, name=name or f"dice_{class_id}", **kwargs)
        self.class_id = class_id

    def result(self):
        tp, denominator = self._per_class(2.0, include_tp_in_denominator=True)
        return ops.divide_no_nan(tp[self.class_id], denominator[self.class_id])

    def get_config(self) -> dict:
        config = super().get_config()
        config["class_id"] = self.class_id
        return config
