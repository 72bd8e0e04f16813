"""The classifier that runs on the segmentation output, Ciga & Martel Table A.3."""

from __future__ import annotations

import keras
from keras import layers, ops

from weaksegtf.models.resnet18_encoder import BN_EPSILON, BN_MOMENTUM


def masked_average(values, weights):
    """``(B, 1, 1, C)`` mean of ``values (B, h, w, C)`` weighted by ``weights (B, h, w)``.

    Example:
    >>> masked_average(np.arange(4.0).reshape(1, 2, 2, 1), np.array([[[1.0, 1.0], [0.0, 0.0]]])).shape
    TensorShape([1, 1, 1, 1])
    """
    weights = ops.expand_dims(ops.cast(weights, values.dtype), -1)
    total = ops.sum(values * weights, axis=(1, 2), keepdims=True)
    return total / ops.maximum(ops.sum(weights, axis=(1, 2), keepdims=True), keras.backend.epsilon())


@keras.saving.register_keras_serializable(package="weaksegtf")
class ClassifierHead(layers.Layer):
    """Image-level class logits from segmentation logits (Table A.3).

    Global average pooling -> 1x1 conv C->hidden (no bias) -> batch norm ->
    ReLU -> 1x1 conv hidden->C (no bias). Given ``valid``, the share of real
    (not padded) pixels in each logit cell, the pooling is the ``valid``-weighted
    mean, so the padding of variable-sized images batched together does not
    count; without it, every cell counts the same (the exported model). The fully connected layers of a usual
    classifier are 1x1 convolutions, as in the paper. Because its input is the
    segmentation, the classification loss can only be lowered by changing the
    segmentation: that is how image-level labels teach pixels (section 2.2).

    Args:
        num_classes: int. Number of classes C.
        hidden: int. Width of the bottleneck. Defaults to ``8``.
        **kwargs: standard ``keras.layers.Layer`` arguments.

    Example:
    >>> head = ClassifierHead(num_classes=3)
    >>> head(np.zeros((2, 16, 16, 3))).shape
    TensorShape([2, 3])
    """

    def __init__(self, num_classes: int, hidden: int = 8, **kwargs):
        super().__init__(**kwargs)
        # === Layers ===
        self.pool = layers.GlobalAveragePooling2D(keepdims=True, name="pool")
        self.reduce = layers.Conv2D(hidden, 1, use_bias=False, name="reduce")
        self.bn = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name="bn")
        self.relu = layers.ReLU(name="relu")
        self.expand = layers.Conv2D(num_classes, 1, use_bias=False, name="expand")
        self.flatten = layers.Flatten(name="flatten")

        # === Config ===
        self.num_classes = num_classes
        self.hidden = hidden

    def build(self, input_shape):
        pooled_shape = (input_shape[0], 1, 1, input_shape[-1])
        self.reduce.build(pooled_shape)
        self.bn.build((input_shape[0], 1, 1, self.hidden))
        self.expand.build((input_shape[0], 1, 1, self.hidden))
        # Weightless, but built too: a model whose layers are all built skips Keras'
        # symbolic build, which under tf.distribute would call it on the training batch.
        self.flatten.build((input_shape[0], 1, 1, self.num_classes))
        self.built = True

    def call(self, segmentation_logits, valid=None, training=None):
        if valid is None:
            x = self.pool(segmentation_logits)
        else:
            x = masked_average(segmentation_logits, valid)
        x = self.relu(self.bn(self.reduce(x), training=training))
        return self.flatten(self.expand(x))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"num_classes": self.num_classes, "hidden": self.hidden})
        return config
