"""A TF Serving SavedModel: uint8 images in, class probabilities and the argmax mask out.

Written with ``keras.export.ExportArchive`` (the Keras 3 way to a
SavedModel). The ``serving_default`` signature takes ``image``, a uint8
``(B, H, W, 3)`` RGB batch of any size with H and W multiples of 16, and
returns ``probabilities`` ``(B, H, W, C)`` float32, ``mask`` ``(B, H, W)``
uint8 (argmax class) and ``label_probabilities`` ``(B, C)`` float32. A
height or width that is not a multiple of 16 fails with a message saying so
instead of a shape error deep in the encoder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from weaksegtf.export.parity import ARGMAX_KEY, Outputs
from weaksegtf.model_card import INPUT_NAME, SIZE_MULTIPLE_PX

SIGNATURE = "serving_default"
SERVING_OUTPUTS = ("probabilities", "mask", "label_probabilities")


def export_savedmodel(model: Any, directory: str | os.PathLike) -> None:
    """Write ``model`` (a ``{"mask", "label"}`` Keras model) as a SavedModel with :data:`SIGNATURE`.

    ``directory`` must not exist yet (the exporter writes to a temporary folder and renames it).
    """
    import keras
    import tensorflow as tf

    def serve(image):
        shape = tf.shape(image)
        checks = [
            tf.debugging.assert_equal(
                shape[axis] % SIZE_MULTIPLE_PX, 0,
                message=f"image {name} must be a multiple of {SIZE_MULTIPLE_PX} pixels",
            )
            for axis, name in ((1, "height"), (2, "width"))
        ]
        with tf.control_dependencies(checks):
            pixels = tf.cast(image, tf.float32)  # normalisation is inside the model
        out = model(pixels, training=False)
        return {
            "probabilities": tf.nn.softmax(out["mask"], axis=-1),
            "mask": tf.cast(tf.argmax(out["mask"], axis=-1), tf.uint8),
            "label_probabilities": tf.nn.softmax(out["label"], axis=-1),
        }

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        SIGNATURE, serve, input_signature=[tf.TensorSpec((None, None, None, 3), tf.uint8, name=INPUT_NAME)]
    )
    archive.write_out(str(Path(directory)), verbose=False)


def savedmodel_runner(directory: str | os.PathLike):
    """A parity runner over the SavedModel's ``serving_default`` (float [0, 255] batches, cast to uint8).

    Returns the loaded signature's outputs renamed like the ONNX ones:
    ``mask_probabilities``, ``mask_argmax`` and ``label_probabilities``.
    """
    import tensorflow as tf

    signature = tf.saved_model.load(str(directory)).signatures[SIGNATURE]

    def run(images: np.ndarray) -> Outputs:
        out = signature(**{INPUT_NAME: tf.constant(np.asarray(images).astype(np.uint8))})
        return {
            "mask_probabilities": out["probabilities"].numpy(),
            ARGMAX_KEY: out["mask"].numpy(),
            "label_probabilities": out["label_probabilities"].numpy(),
        }

    return run
