"""What an exported ``.onnx`` says about itself, and a TensorFlow-free reader for it.

A whole-slide inferencer needs nothing but the ``.onnx`` file: the class
names and colours, the resolution (mpp) and tile size the model was trained
at, how inputs are normalised, and where the weights came from all travel in
the model's ``metadata_props`` as string values (JSON where structured).
This module imports numpy and onnxruntime only, never TensorFlow or onnx.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from weaksegtf.errors import ConfigError, ModelFileError

METADATA_VERSION = 1
#: The single ONNX input: (B, H, W, 3) float32 RGB in [0, 255], H and W multiples of 16.
INPUT_NAME = "image"
SIZE_MULTIPLE_PX = 16
#: Every output an export can have; ``mask_logits`` is always present.
OUTPUT_NAMES = ("mask_logits", "label_logits", "mask_probabilities")
DEFAULT_OUTPUTS = ("mask_logits", "label_logits")
#: ``metadata_props`` keys written by :meth:`OnnxMetadata.to_props`.
METADATA_KEYS = (
    "weaksegtf_metadata_version",
    "weaksegtf_version",
    "architecture",
    "class_names",
    "class_colors",
    "mpp",
    "tile_size_px",
    "input",
    "normalization",
    "macenko",
    "outputs",
    "quantization",
    "weights_sha256",
    "provenance",
)
_REQUIRED_KEYS = ("weaksegtf_metadata_version", "class_names", "input", "outputs")
_INPUT = {
    "name": INPUT_NAME,
    "dtype": "float32",
    "layout": "NHWC",
    "channels": "RGB",
    "value_range": [0, 255],
    "size_multiple_px": SIZE_MULTIPLE_PX,
}


@dataclass(frozen=True)
class OnnxMetadata:
    """Everything an exported model says about itself.

    Args:
        class_names: tuple of str. One name per class, index order.
        class_colors: tuple of (r, g, b). Display colour of each class, 0-255.
        weights_sha256: str. :func:`weights_sha256` of the Keras weights exported.
        weaksegtf_version: str. Package version that wrote the file.
        architecture: str. Model family, such as ``"resnet18"``.
        mpp: float, optional. Microns per pixel of the training tiles. Defaults to ``None`` (unknown).
        tile_size_px: int, optional. Training tile side in pixels. Defaults to ``None`` (unknown).
        normalization: dict. How pixels are normalised; for exports from this
            package ``{"in_graph": True, ...}``: feed raw RGB in [0, 255].
            Defaults to ``{"in_graph": True}``.
        macenko: dict, optional. The Macenko stain reference applied to
            training tiles (``MacenkoNormalizer.save`` JSON), to apply to
            inputs *before* the model. Defaults to ``None`` (none used).
        outputs: tuple of str. Output names present. Defaults to :data:`DEFAULT_OUTPUTS`.
        quantization: str. ``"none"`` or a description such as ``"int8 QDQ"``. Defaults to ``"none"``.
        provenance: dict, optional. ``weaksegtf.provenance.provenance()`` of the
            export (versions, command line, time, settings); not compared by
            ``==``. Defaults to ``None``.

    Example:
    >>> meta = OnnxMetadata(("background", "gland"), ((240, 240, 240), (220, 40, 40)), "ab12", "0.1.0", "resnet18")
    >>> OnnxMetadata.from_props(meta.to_props()) == meta
    True
    """

    class_names: tuple[str, ...]
    class_colors: tuple[tuple[int, int, int], ...]
    weights_sha256: str
    weaksegtf_version: str
    architecture: str
    mpp: float | None = None
    tile_size_px: int | None = None
    normalization: dict[str, Any] = field(default_factory=lambda: {"in_graph": True})
    macenko: dict[str, Any] | None = None
    outputs: tuple[str, ...] = DEFAULT_OUTPUTS
    quantization: str = "none"
    provenance: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input(self) -> dict[str, Any]:
        """The input contract: name, dtype, layout, value range, size multiple."""
        return dict(_INPUT)

    def to_props(self) -> dict[str, str]:
        """String ``metadata_props`` (JSON for structured values)."""
        values: dict[str, Any] = {
            "weaksegtf_metadata_version": METADATA_VERSION,
            "weaksegtf_version": self.weaksegtf_version,
            "architecture": self.architecture,
            "class_names": list(self.class_names),
            "class_colors": [list(c) for c in self.class_colors],
            "mpp": self.mpp,
            "tile_size_px": self.tile_size_px,
            "input": self.input,
            "normalization": self.normalization,
            "macenko": self.macenko,
            "outputs": list(self.outputs),
            "quantization": self.quantization,
            "weights_sha256": self.weights_sha256,
            "provenance": self.provenance,
        }
        return {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}

    @classmethod
    def from_props(cls, props: Mapping[str, str], source: str = "the model") -> "OnnxMetadata":
        """Parse :meth:`to_props` output.

        Raises:
            ModelFileError: keys are missing or values are not what this version writes.
        """
        missing = [k for k in _REQUIRED_KEYS if k not in props]
        if missing:
            raise ModelFileError(
                f"{source} has no weaksegtf metadata (missing {', '.join(missing)}; found keys "
                f"{sorted(props) or 'none'}); expected an .onnx file written by weakseg-export"
            )
        try:
            version = int(json.loads(props["weaksegtf_metadata_version"]))
            if version > METADATA_VERSION:
                raise ValueError(f"metadata version {version} is newer than {METADATA_VERSION}; upgrade weaksegtf")
            class_names = tuple(str(n) for n in json.loads(props["class_names"]))
            colors = tuple(tuple(int(v) for v in c) for c in json.loads(props.get("class_colors", "[]")))
            if len(colors) != len(class_names) or any(len(c) != 3 for c in colors):
                raise ValueError(f"{len(colors)} colours for {len(class_names)} classes")
            mpp = json.loads(props.get("mpp", "null"))
            tile_size_px = json.loads(props.get("tile_size_px", "null"))
            return cls(
                class_names=class_names,
                class_colors=colors,  # type: ignore[arg-type]
                weights_sha256=props.get("weights_sha256", ""),
                weaksegtf_version=props.get("weaksegtf_version", ""),
                architecture=props.get("architecture", ""),
                mpp=None if mpp is None else float(mpp),
                tile_size_px=None if tile_size_px is None else int(tile_size_px),
                normalization=json.loads(props.get("normalization", '{"in_graph": true}')),
                macenko=json.loads(props.get("macenko", "null")),
                outputs=tuple(json.loads(props["outputs"])),
                quantization=props.get("quantization", "none"),
                provenance=json.loads(props.get("provenance", "null")),
            )
        except (ValueError, TypeError) as error:
            raise ModelFileError(f"{source} has unreadable weaksegtf metadata: {error}") from None


def read_onnx_metadata(model: str | Path | Any) -> OnnxMetadata:
    """Read the metadata of an exported model, without TensorFlow.

    Args:
        model: str, path, or an ``onnxruntime.InferenceSession`` already open
            on the file (so an inferencer does not load the model twice).

    Raises:
        ModelFileError: the file is missing, is not ONNX, or was not written by weakseg-export.

    Example:
    >>> meta = read_onnx_metadata("model.onnx")  # doctest: +SKIP
    >>> meta.class_names, meta.mpp, meta.tile_size_px  # doctest: +SKIP
    (('background', 'benign gland', 'malignant gland'), 1.24, 128)
    """
    if isinstance(model, (str, Path)):
        path = Path(model)
        if not path.is_file():
            raise ModelFileError(f"ONNX model {path} does not exist; expected an .onnx file written by weakseg-export")
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own unexported exception types
            raise ModelFileError(f"cannot open {path} as an ONNX model: {error}") from None
        source = str(path)
    else:
        session, source = model, "the ONNX session"
    return OnnxMetadata.from_props(dict(session.get_modelmeta().custom_metadata_map), source)


def weights_sha256(arrays: Iterable[np.ndarray]) -> str:
    """Hash of model weights, independent of the file that holds them.

    For each array in order (``model.weights`` order): its dtype and shape as
    text (``"float32(3, 3, 64, 64)"``), then its C-order bytes. Saving the same
    weights twice gives the same hash, although the ``.keras`` files differ
    (they record the save date).
    """
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.name}{tuple(array.shape)}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def check_outputs(outputs: Sequence[str]) -> tuple[str, ...]:
    """Validate requested output names: known, unique, ``mask_logits`` included."""
    outputs = tuple(outputs)
    unknown = [o for o in outputs if o not in OUTPUT_NAMES]
    if unknown or "mask_logits" not in outputs or len(set(outputs)) != len(outputs):
        raise ConfigError(
            f"outputs {list(outputs)} are not valid; expected distinct names from {list(OUTPUT_NAMES)} "
            f"including 'mask_logits'"
        )
    return outputs
