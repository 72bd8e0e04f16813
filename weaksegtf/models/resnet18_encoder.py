"""ResNet-18 cut after layer3, the encoder of Ciga & Martel (Fig. 1, Appendix A)."""

from __future__ import annotations

import keras
from keras import layers

# PyTorch BatchNorm2d defaults: eps 1e-5 and momentum 0.1 (Keras counts momentum
# the other way round), so imported torchvision statistics behave identically.
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9

# torchvision ResNet-18: (stage name, filters, stride of the first block).
STAGES = (("layer1", 64, 1), ("layer2", 128, 2), ("layer3", 256, 2))
BLOCKS_PER_STAGE = 2


def _conv(filters: int, kernel: int, stride: int, name: str) -> layers.Conv2D:
    return layers.Conv2D(filters, kernel, strides=stride, padding="valid", use_bias=False, name=name)


def _bn(name: str) -> layers.BatchNormalization:
    return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)


def _basic_block(x, filters: int, stride: int, prefix: str):
    """torchvision ``BasicBlock``: two 3x3 convolutions and a residual connection.

    Padding is explicit and symmetric, as in PyTorch, instead of Keras "same"
    padding (asymmetric at stride 2), so imported weights give the same output.
    """
    shortcut = x
    y = layers.ZeroPadding2D(1, name=f"{prefix}.pad1")(x)
    y = _conv(filters, 3, stride, f"{prefix}.conv1")(y)
    y = _bn(f"{prefix}.bn1")(y)
    y = layers.ReLU(name=f"{prefix}.relu1")(y)
    y = layers.ZeroPadding2D(1, name=f"{prefix}.pad2")(y)
    y = _conv(filters, 3, 1, f"{prefix}.conv2")(y)
    y = _bn(f"{prefix}.bn2")(y)
    if stride != 1 or x.shape[-1] != filters:
        shortcut = _conv(filters, 1, stride, f"{prefix}.downsample.0")(x)
        shortcut = _bn(f"{prefix}.downsample.1")(shortcut)
    y = layers.Add(name=f"{prefix}.add")([y, shortcut])
    return layers.ReLU(name=f"{prefix}.relu2")(y)


@keras.saving.register_keras_serializable(package="weaksegtf")
class ResNet18Encoder(keras.Model):
    """ResNet-18 up to and including layer3: 256 channels at 1/16 resolution.

    This is the encoder of Ciga & Martel (2021), Appendix A: the third of the
    four ResNet-18 stages, kept because their 128-pixel patches are too small
    for the fourth. Layer names follow torchvision (``conv1``, ``bn1``,
    ``layer1.0.conv1``, ``layer2.0.downsample.0``, ...), so a torchvision
    ``state_dict`` maps one to one (see ``weaksegtf.models.torch_weights``).

    Inputs are NHWC float tensors that are already normalised (the
    ``WeakSegmenter`` bakes the ImageNet normalisation in front). Height and
    width may be unknown, and must be multiples of 16.

    Args:
        input_channels: int. Number of input channels. Defaults to ``3``.
        return_features: bool. Return ``[layer1, layer2, layer3]`` (strides 4,
            8 and 16; 64, 128 and 256 channels) instead of layer3 alone, for
            decoders with skip connections. Defaults to ``False``.
        **kwargs: standard ``keras.Model`` arguments such as ``name``.

    Example:
    >>> encoder = ResNet18Encoder()
    >>> encoder(np.zeros((1, 128, 128, 3))).shape
    TensorShape([1, 8, 8, 256])
    """

    stride = 16
    output_channels = 256

    def __init__(self, input_channels: int = 3, return_features: bool = False, **kwargs):
        # === Functional graph ===
        inputs = keras.Input(shape=(None, None, input_channels), name="image")
        x = layers.ZeroPadding2D(3, name="pad1")(inputs)
        x = _conv(64, 7, 2, "conv1")(x)
        x = _bn("bn1")(x)
        x = layers.ReLU(name="relu")(x)
        # Zero padding equals PyTorch's -inf padding here because inputs are >= 0 after ReLU.
        x = layers.ZeroPadding2D(1, name="maxpool_pad")(x)
        x = layers.MaxPooling2D(3, strides=2, name="maxpool")(x)
        features = []
        for stage, filters, stride in STAGES:
            for block in range(BLOCKS_PER_STAGE):
                x = _basic_block(x, filters, stride if block == 0 else 1, f"{stage}.{block}")
            features.append(x)
        kwargs.setdefault("name", "resnet18_encoder")
        super().__init__(inputs=inputs, outputs=features if return_features else x, **kwargs)

        # === Config ===
        self.input_channels = input_channels
        self.return_features = return_features

    def get_config(self) -> dict:
        config = {"input_channels": self.input_channels, "name": self.name, "trainable": self.trainable}
        if self.return_features:  # old files have no such key and load as before
            config["return_features"] = True
        return config

    @classmethod
    def from_config(cls, config: dict) -> "ResNet18Encoder":
        return cls(**config)
