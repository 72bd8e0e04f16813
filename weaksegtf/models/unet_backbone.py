"""The five-level U-Net of Bokhorst et al. (2018), Fig. 2b, as a backbone without a head."""

from __future__ import annotations

import keras
from keras import layers

from weaksegtf.models.resnet18_encoder import BN_EPSILON, BN_MOMENTUM


def _conv_bn_relu(x, filters: int, name: str):
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}.conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{name}.bn")(x)
    return layers.ReLU(name=f"{name}.relu")(x)


def _block(x, filters: int, convs: int, name: str):
    """``convs`` 3x3 convolutions; the block's input is concatenated with the last one.

    Bokhorst et al., section 3 ("Training"): "skip connections within
    convolutional layers have been added, where the input of the layer block
    is concatenated with the last feature map".
    """
    y = x
    for i in range(convs):
        y = _conv_bn_relu(y, filters, f"{name}.{i}")
    return layers.Concatenate(name=f"{name}.concat")([x, y])


@keras.saving.register_keras_serializable(package="weaksegtf")
class UNetBackbone(keras.Model):
    """U-Net feature extractor of Bokhorst et al. (2018), full resolution, no head.

    Five levels (``depth``), ``filters`` at the first level, doubling after
    each 2x2 max-pool, as in Ronneberger et al. (2015). Two changes follow
    Bokhorst et al. (section 3, Fig. 2b):

    - inside every block the block's input is concatenated with the block's
      last feature map, so each block's output carries its input forward;
    - the expanding path upsamples, then convolves, instead of a transposed
      convolution. Upsampling is nearest-neighbour: it exports to ONNX with
      unknown spatial sizes (bilinear resizing does not in every runtime) and
      a 3x3 convolution follows anyway.

    Every convolution is 3x3 with "same" padding, batch norm and ReLU, so the
    output has the input's height and width. With ``depth`` levels there are
    ``depth - 1`` poolings: height and width must be multiples of
    ``2 ** (depth - 1)`` (16 for five levels) and may otherwise be unknown.
    The output has :attr:`output_channels` channels; ``WeakSegmenter`` puts a
    1x1 convolution on top as its segmentation head.

    Args:
        filters: int. Filters of the first level. Defaults to ``32``.
        depth: int. Number of levels (resolutions). Defaults to ``5``.
        convs_per_block: int. 3x3 convolutions per block. Defaults to ``2``.
        input_channels: int. Channels of the input. Defaults to ``3``.
        **kwargs: standard ``keras.Model`` arguments such as ``name``.

    Example:
    >>> backbone = UNetBackbone(filters=8)
    >>> backbone(np.zeros((1, 64, 48, 3))).shape
    TensorShape([1, 64, 48, 27])
    """

    def __init__(
        self, filters: int = 32, depth: int = 5, convs_per_block: int = 2, input_channels: int = 3, **kwargs
    ):
        # === Functional graph ===
        inputs = keras.Input(shape=(None, None, input_channels), name="image")
        x = inputs
        skips = []
        for level in range(depth):
            x = _block(x, filters * 2**level, convs_per_block, f"down{level}")
            if level < depth - 1:
                skips.append(x)
                x = layers.MaxPooling2D(2, name=f"down{level}.pool")(x)
        for level in reversed(range(depth - 1)):
            x = layers.UpSampling2D(2, interpolation="nearest", name=f"up{level}.upsample")(x)
            x = _conv_bn_relu(x, filters * 2**level, f"up{level}.up")
            x = layers.Concatenate(name=f"up{level}.skip")([skips[level], x])
            x = _block(x, filters * 2**level, convs_per_block, f"up{level}")
        kwargs.setdefault("name", "unet_backbone")
        super().__init__(inputs=inputs, outputs=x, **kwargs)

        # === Config ===
        self.filters = filters
        self.depth = depth
        self.convs_per_block = convs_per_block
        self.input_channels = input_channels

    @property
    def stride(self) -> int:
        """Height and width must be multiples of this."""
        return 2 ** (self.depth - 1)

    @property
    def output_channels(self) -> int:
        return int(self.output.shape[-1])

    def get_config(self) -> dict:
        return {
            "filters": self.filters,
            "depth": self.depth,
            "convs_per_block": self.convs_per_block,
            "input_channels": self.input_channels,
            "name": self.name,
            "trainable": self.trainable,
        }

    @classmethod
    def from_config(cls, config: dict) -> "UNetBackbone":
        return cls(**config)
