"""Keras segmenter -> ONNX through tf2onnx, with stable input and output names.

The model is wrapped in a functional model whose outputs are named layers
(``mask_logits``, ``label_logits``, optionally ``mask_probabilities``), and
converted with ``tf2onnx.convert.from_keras`` and an explicit input
signature ``(None, None, None, 3)`` float32 named ``image``: batch, height and
width stay dynamic. ``from_keras`` freezes the Normalization constants into
the graph; ``from_function`` on Keras 3 models left them as extra graph
inputs. Nearest UpSampling2D converts with unknown sizes (bilinear would not).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Iterator, Sequence

from weaksegtf.errors import ConfigError, ExportError
from weaksegtf.model_card import INPUT_NAME, OnnxMetadata, check_outputs

#: Written unless asked otherwise: supported by tf2onnx and every onnxruntime since 1.12.
DEFAULT_OPSET = 17
#: onnxruntime only guarantees opsets from 7 ("ONNX Runtime only *guarantees* support for models
#: stamped with opset version 7 or above"), and runs none of this model's operators below it.
MIN_OPSET = 7
#: Static QDQ quantisation with per-channel weights needs QuantizeLinear's ``axis`` (opset 13).
MIN_INT8_OPSET = 13


def max_opset() -> int:
    """Newest opset both tf2onnx can write and onnxruntime can run."""
    import onnx
    from tf2onnx import constants

    return min(max(constants.OPSET_TO_IR_VERSION), onnx.defs.onnx_opset_version())


def check_opset(opset: int | None, int8: bool = False) -> int:
    """The opset to write (``None`` means :data:`DEFAULT_OPSET`), or a ConfigError naming the range."""
    if opset is None:
        opset = DEFAULT_OPSET
    if isinstance(opset, bool) or not isinstance(opset, int):
        raise ConfigError(f"opset must be an int, got {opset!r}")
    import onnxruntime as ort
    import tf2onnx

    low, high = (MIN_INT8_OPSET if int8 else MIN_OPSET), max_opset()
    if not low <= opset <= high:
        why = "int8 QDQ quantisation needs" if int8 and opset < low else (
            f"onnxruntime {ort.__version__} and tf2onnx {tf2onnx.__version__} support"
        )
        raise ConfigError(f"opset {opset} cannot be exported and run: {why} opsets {low} to {high}")
    return opset


@contextlib.contextmanager
def _quiet(logger_name: str, level: int = logging.ERROR) -> Iterator[None]:
    """tf2onnx logs every optimiser pass at INFO; keep the CLI output to our report."""
    logger = logging.getLogger(logger_name)
    previous = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(previous)


def keras_to_onnx(model: Any, opset: int, outputs: Sequence[str]) -> Any:
    """Convert a ``{"mask", "label"}`` Keras model to an ``onnx.ModelProto``.

    Args:
        model: keras.Model. Maps ``(B, H, W, 3)`` float32 to ``{"mask", "label"}`` logits.
        opset: int. ONNX opset (see :func:`check_opset`).
        outputs: sequence of str. Output names from ``OUTPUT_NAMES``.

    Raises:
        ExportError: tf2onnx cannot convert the model.
    """
    import keras
    import tensorflow as tf
    import tf2onnx

    outputs = check_outputs(outputs)
    image = keras.Input(shape=(None, None, 3), dtype="float32", name=INPUT_NAME)
    raw = model(image, training=False)
    heads = {
        "mask_logits": lambda: keras.layers.Identity(name="mask_logits")(raw["mask"]),
        "label_logits": lambda: keras.layers.Identity(name="label_logits")(raw["label"]),
        "mask_probabilities": lambda: keras.layers.Softmax(axis=-1, name="mask_probabilities")(raw["mask"]),
    }
    wrapper = keras.Model(image, {name: heads[name]() for name in outputs}, name=f"{model.name}_export")
    signature = (tf.TensorSpec((None, None, None, 3), tf.float32, name=INPUT_NAME),)
    try:
        with _quiet("tf2onnx"), _quiet("tensorflow"):
            proto, _ = tf2onnx.convert.from_keras(wrapper, input_signature=signature, opset=opset)
    except Exception as error:  # tf2onnx raises bare ValueErrors and more
        raise ExportError(f"tf2onnx {tf2onnx.__version__} cannot convert {model.name} at opset {opset}: {error}") from None
    names = [o.name for o in proto.graph.output]
    if sorted(names) != sorted(outputs) or [i.name for i in proto.graph.input] != [INPUT_NAME]:
        raise ExportError(
            f"tf2onnx named the inputs {[i.name for i in proto.graph.input]} and outputs {names}; "
            f"expected ['{INPUT_NAME}'] and {list(outputs)}"
        )
    return proto


def set_metadata(proto: Any, metadata: OnnxMetadata) -> None:
    """Replace ``metadata_props`` (and the doc string) with ``metadata``."""
    import weaksegtf

    del proto.metadata_props[:]
    for key, value in metadata.to_props().items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "weaksegtf"
    proto.producer_version = weaksegtf.__version__
    proto.doc_string = (
        f"weaksegtf {metadata.architecture} segmenter, classes {list(metadata.class_names)}. "
        f"Input '{INPUT_NAME}': (B, H, W, 3) float32 RGB in [0, 255], H and W multiples of 16; "
        f"normalisation is inside the graph. Outputs: {', '.join(metadata.outputs)}."
    )
