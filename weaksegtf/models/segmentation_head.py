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
        self.upsample.build(hidden_shape)  # weightless; see ClassifierHead.build
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


@keras.saving.register_keras_serializable(package="weaksegtf")
class SkipSegmentationHead(layers.Layer):
    """Decoder that refines Table A.2's head with the encoder's stride-8 and stride-4 features.

    In the spirit of FPN / U-Net decoders: Table A.2's 3x3 conv -> BN -> ReLU
    on layer3 (stride 16), x2 nearest upsampling, concatenation with layer2
    (stride 8, reduced by a 1x1 conv), a 3x3 conv block of ``filters``; again
    x2 and layer1 (stride 4), a 3x3 conv block of ``skip_filters`` (the
    stride-4 stage has 4 times the pixels, so it is kept narrow); then the
    1x1 classifying conv. Its output, logits at 1/4 of
    the input, is what the classifier head reads (Table A.3 reads the logits
    before their final enlargement); ``WeakSegmenter`` enlarges them x4.

    Args:
        num_classes: int. Number of output classes C.
        filters: int. Channels of every hidden 3x3 convolution. Defaults to ``64``.
        skip_filters: int. Channels each skip connection is reduced to. Defaults to ``32``.
        **kwargs: standard ``keras.layers.Layer`` arguments.

    Example:
    >>> head = SkipSegmentationHead(num_classes=3)
    >>> features = [np.zeros((2, 32, 32, 64)), np.zeros((2, 16, 16, 128)), np.zeros((2, 8, 8, 256))]
    >>> head(features).shape
    TensorShape([2, 32, 32, 3])
    """

    def __init__(self, num_classes: int, filters: int = 64, skip_filters: int = 32, **kwargs):
        super().__init__(**kwargs)
        # === Layers ===
        self.conv = layers.Conv2D(filters, 3, padding="same", use_bias=False, name="conv")
        self.bn = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name="bn")
        self.upsample = layers.UpSampling2D(2, interpolation="nearest", name="upsample")
        self.skips = [self._block(skip_filters, 1, f"skip{i}") for i in (8, 4)]
        self.fuse = [self._block(width, 3, f"fuse{i}") for width, i in ((filters, 8), (skip_filters, 4))]
        self.classify = layers.Conv2D(num_classes, 1, use_bias=True, name="classify")

        # === Config ===
        self.num_classes = num_classes
        self.filters = filters
        self.skip_filters = skip_filters

    @staticmethod
    def _block(filters: int, kernel: int, name: str) -> list:
        return [layers.Conv2D(filters, kernel, padding="same", use_bias=False, name=f"{name}_conv"),
                layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{name}_bn")]

    @staticmethod
    def _run(block, x, training):
        conv, bn = block
        return keras.ops.relu(bn(conv(x), training=training))

    def build(self, input_shape):
        stride4, stride8, stride16 = input_shape
        self.conv.build(stride16)
        self.bn.build((*stride16[:-1], self.filters))
        for block, shape in zip(self.skips, (stride8, stride4)):
            block[0].build(shape)
            block[1].build((*shape[:-1], self.skip_filters))
        for block, shape, width in zip(self.fuse, (stride8, stride4), (self.filters, self.skip_filters)):
            block[0].build((*shape[:-1], self.filters + self.skip_filters))
            block[1].build((*shape[:-1], width))
        self.upsample.build((*stride16[:-1], self.filters))  # weightless; see ClassifierHead.build
        self.classify.build((*stride4[:-1], self.skip_filters))
        self.built = True

    def call(self, features, training=None):
        stride4, stride8, stride16 = features
        x = keras.ops.relu(self.bn(self.conv(stride16), training=training))
        for skip, fuse, feature in zip(self.skips, self.fuse, (stride8, stride4)):
            x = keras.ops.concatenate([self.upsample(x), self._run(skip, feature, training)], axis=-1)
            x = self._run(fuse, x, training)
        return self.classify(x)

    def compute_output_shape(self, input_shape):
        return (*input_shape[0][:-1], self.num_classes)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"num_classes": self.num_classes, "filters": self.filters, "skip_filters": self.skip_filters})
        return config


@keras.saving.register_keras_serializable(package="weaksegtf")
class ScaleResize(layers.Layer):
    """Enlarge ``(B, h, w, C)`` by a fixed integer factor, bilinear (half-pixel centres) or nearest.

    The output size is ``factor`` times the input's, computed from the tensor's
    dynamic shape with TensorFlow ops, so the ONNX export keeps unknown height
    and width (a Resize node fed by Shape * factor); bilinear matches
    PyTorch's ``align_corners=False``. Keras' bilinear ``UpSampling2D`` did not
    export with unknown sizes.

    Example:
    >>> ScaleResize(2)(np.arange(4.0).reshape(1, 2, 2, 1))[0, :, :, 0].numpy().round(2).tolist()
    [[0.0, 0.25, 0.75, 1.0], [0.5, 0.75, 1.25, 1.5], [1.5, 1.75, 2.25, 2.5], [2.0, 2.25, 2.75, 3.0]]
    """

    def __init__(self, factor: int, interpolation: str = "bilinear", **kwargs):
        super().__init__(**kwargs)
        if interpolation not in ("bilinear", "nearest"):
            raise ValueError(f"interpolation must be 'bilinear' or 'nearest', got {interpolation!r}")
        self.factor = int(factor)
        self.interpolation = interpolation

    def call(self, x):
        import tensorflow as tf

        size = tf.shape(x)[1:3] * self.factor
        return tf.cast(tf.image.resize(x, size, method=self.interpolation), x.dtype)

    def compute_output_shape(self, input_shape):
        def up(size):
            return None if size is None else self.factor * size

        return (input_shape[0], up(input_shape[1]), up(input_shape[2]), input_shape[3])

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"factor": self.factor, "interpolation": self.interpolation})
        return config
