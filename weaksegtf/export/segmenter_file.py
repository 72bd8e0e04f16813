"""Open a ``.keras`` file as an exportable weaksegtf segmenter, or say why it is not one.

Export is architecture-agnostic: any model registered by weaksegtf whose
call maps an RGB batch ``(B, H, W, 3)`` in [0, 255] to
``{"mask": (B, H, W, C) logits, "label": (B, C) logits}`` can be exported
(today the ResNet-18 ``WeakSegmenter``; a U-Net with the same outputs needs
no change here). The file is checked before TensorFlow is imported, so a
wrong path fails fast.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from weaksegtf.data.images import PathLike
from weaksegtf.errors import ModelFileError

#: Prefix of ``registered_name`` for every class weaksegtf registers with Keras.
REGISTERED_PACKAGE = "weaksegtf"
_PROBE_SIZE_PX = 32
_EXPECTED = (
    "a weaksegtf model saved as .keras (such as WeakSegmenter, written by weakseg-train or weakseg-demo) "
    "with outputs {'mask': (B, H, W, C), 'label': (B, C)}"
)


@dataclass
class Segmenter:
    """A loaded model with what the export needs to know about it."""

    model: Any  # keras.Model
    path: Path
    class_names: list[str]
    architecture: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Keras outputs as numpy, named like the ONNX outputs."""
        out = self.model(images, training=False)
        mask = np.asarray(out["mask"])
        return {
            "mask_logits": mask,
            "label_logits": np.asarray(out["label"]),
            "mask_probabilities": softmax(mask),
            "label_probabilities": softmax(np.asarray(out["label"])),
        }


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = logits - np.max(logits, axis=axis, keepdims=True)
    exp = np.exp(shifted)
    return exp / np.sum(exp, axis=axis, keepdims=True)


def read_keras_config(path: PathLike) -> dict:
    """The top-level config of a ``.keras`` archive, checked to be a weaksegtf model (no TensorFlow).

    Raises:
        ModelFileError: missing file, not a ``.keras`` archive, or not a weaksegtf class.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist; expected {_EXPECTED}")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path} is not a Keras 3 .keras archive (not a zip file); expected {_EXPECTED}")
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (KeyError, ValueError, OSError, zipfile.BadZipFile) as error:
        raise ModelFileError(f"{path} has no readable config.json ({error}); expected {_EXPECTED}") from None
    registered = str(config.get("registered_name") or config.get("class_name") or "")
    if not registered.startswith(f"{REGISTERED_PACKAGE}>"):
        raise ModelFileError(
            f"{path} holds a Keras {config.get('class_name', 'object')!r} (registered as {registered!r}); "
            f"expected {_EXPECTED}"
        )
    return config


def load_segmenter(path: PathLike) -> Segmenter:
    """Load and probe a weaksegtf ``.keras`` model.

    Raises:
        ModelFileError: see :func:`read_keras_config`; also a model that fails to
            load or whose outputs are not ``{"mask", "label"}`` of matching class count.
    """
    path = Path(path)
    config = read_keras_config(path)
    import keras

    import weaksegtf.models  # noqa: F401  (registers the classes the file names)

    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as error:  # Keras raises many types for a bad archive
        raise ModelFileError(f"cannot load {path}: {type(error).__name__}: {error}") from None
    out = model(np.zeros((1, _PROBE_SIZE_PX, _PROBE_SIZE_PX, 3), np.float32), training=False)
    shapes = {k: tuple(v.shape) for k, v in out.items()} if isinstance(out, dict) else None
    mask, label = (shapes or {}).get("mask"), (shapes or {}).get("label")
    if (
        mask is None or label is None or len(mask) != 4 or len(label) != 2
        or mask[:3] != (1, _PROBE_SIZE_PX, _PROBE_SIZE_PX) or mask[3] != label[1]
    ):
        received = shapes if shapes is not None else type(out).__name__
        raise ModelFileError(
            f"{path} maps a (1, {_PROBE_SIZE_PX}, {_PROBE_SIZE_PX}, 3) batch to {received}; "
            f"expected {{'mask': (1, {_PROBE_SIZE_PX}, {_PROBE_SIZE_PX}, C), 'label': (1, C)}}"
        )
    num_classes = int(mask[3])
    inner = config.get("config", {})
    class_names = list(getattr(model, "class_names", None) or inner.get("class_names") or [])
    if not class_names:
        class_names = [f"class_{i}" for i in range(num_classes)]
    if len(class_names) != num_classes:
        raise ModelFileError(f"{path} names {len(class_names)} classes {class_names} but outputs {num_classes}")
    architecture = str(getattr(model, "architecture", None) or inner.get("architecture") or config.get("class_name"))
    return Segmenter(model, path, class_names, architecture)
