"""The segmentation decoder of Ciga & Martel, Table A.2."""

from __future__ import annotations

import keras
from keras import layers

from weaksegtf.models.resnet18_encoder import BN_EPSILON, BN_MOMENTUM


@keras.saving.register_keras_serializable(package="weaksegtf")
class SegmentationHead(layers.Layer):
    """Decoder from encoder features to low-resolution class logits (Table A.2).

    3x3 conv (no bias) -> batch norm -> ReLU -> x2 upsampling -> 1x1 conv (with
    bias). Its output is the segmentation *before* the final interpolation to
    the input size: the classifier head reads exactly this tensor (Table A.3,
    footnote), and ``WeakSegmenter`` upsamples it to full resolution.

    Upsampling is nearest-neighbour: PyTorch's ``nn.Upsample`` default, and it
    exports to ONNX with unknown spatial sizes (bilinear does not).

    Args:
        num_classes: int. Number of output classes C.
        filters: int. Channels of the hidden 3x3 convolution. Defaults to ``64``.
        **kwargs: standard ``keras.layers.Layer`` arguments.

    Example:
    >>> head = SegmentationHead(num_classes=3)
    >>> head(np.zeros((2, 8, 8, 256))).shape
    TensorShape([2, 16, 16, 3])
    """

    def __init__(self, num_classes: int, filters: int = 64, **kwargs):
        super().__init__(**kwargs)
        # === Layers ===
        self.conv = layers.Conv2D(filters, 3, padding="same", use_bias=False, name="conv")
        self.bn = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name="bn")
        self.relu = layers.ReLU(name="relu")
        self.upsample = layers.UpSampling2D(2, interpolation="nearest", name="upsample")
        self.classify = layers.Conv2D(num_classes, 1, use_bias=True, name="classify")

        # === Config ===
        self.num_classes = num_classes
        self.filters = filters

    def build(self, input_shape):
        self.conv.build(input_shape)
        hidden_shape = (*input_shape[:-1], self.filters)
        self.bn.build(hidden_shape)
        self.classify.build(hidden_shape)
        self.built = True

    def call(self, features, training=None):
        x = self.relu(self.bn(self.conv(features), training=training))
        return self.classify(self.upsample(x))

    def compute_output_shape(self, input_shape):
        def up(size):
            return None if size is None else 2 * size

        return (input_shape[0], up(input_shape[1]), up(input_shape[2]), self.num_classes)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"num_classes": self.num_classes, "filters": self.filters})
        return config
