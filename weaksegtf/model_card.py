"""The model card: what a model needs at deployment, written once, stored inside ``model.keras`` and the ``.onnx``.

Classes, their colours, the training resolution (mpp), the tile size and the
stain reference become known during preparation and training. Training puts
them in ``WeakSegmenter(model_card=...)``, so they travel inside the ``.keras``
file; ``weakseg-export`` copies them into the ONNX metadata (its flags only
override; :class:`OnnxMetadata`), and ``weakseg-infer`` reads them from there
(:func:`read_onnx_metadata`, numpy and onnxruntime only, never TensorFlow or
onnx). A user never retypes them.

The mpp comes, first match wins, from ``weakseg-train --mpp``, from
``weakseg-prepare``'s ``summary.json`` (``patch_mpp``) or the GlaS adapter's
``split.json`` (``mpp``) beside the training folders. No TensorFlow here: the
card of a ``.keras`` file is read from its ``config.json``.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from weaksegtf.constants import SIZE_MULTIPLE
from weaksegtf.errors import ConfigError, DataError, ModelFileError

MODEL_CARD_VERSION = 1
#: Files beside (or one level above) a training folder that declare how it was made.
PREPARE_SUMMARY = "summary.json"
GLAS_SPLIT = "split.json"
STAIN_REFERENCE = "stain_normalizer.json"


def check_mpp(mpp: Any, what: str = "mpp") -> float | None:
    """``mpp`` as a float, or ``None``; a ConfigError unless it is a positive finite number."""
    if mpp is None:
        return None
    if isinstance(mpp, bool) or not isinstance(mpp, (int, float)) or not math.isfinite(mpp) or mpp <= 0:
        raise ConfigError(f"{what} must be a positive number of microns per pixel, got {mpp!r}")
    return float(mpp)


def build_model_card(
    class_names: Sequence[str],
    *,
    tile_size_px: int | None = None,
    mpp: float | None = None,
    macenko: Mapping[str, Any] | None = None,
    class_colors: Sequence[Sequence[int]] | None = None,
    mpp_source: str | None = None,
) -> dict[str, Any]:
    """A JSON-ready model card.

    Args:
        class_names: sequence of str. One name per class, background first.
        tile_size_px: int, optional. Training tile side. Defaults to ``None``.
        mpp: float, optional. Microns per pixel of the training tiles. Defaults to ``None`` (unknown).
        macenko: dict, optional. Macenko stain reference (``MacenkoNormalizer.save`` JSON). Defaults to ``None``.
        class_colors: sequence of (r, g, b), optional. Defaults to ``weaksegtf.visualize.DEFAULT_COLORS``.
        mpp_source: str, optional. Where the mpp came from, for the reader. Defaults to ``None``.

    Raises:
        ConfigError: a non-positive mpp, or colours that do not match the classes.

    Example:
    >>> build_model_card(["background", "gland"], tile_size_px=128, mpp=1.24)["mpp"]
    1.24
    """
    from weaksegtf.visualize import palette

    names = [str(name) for name in class_names]
    if class_colors is not None and (len(class_colors) != len(names) or any(len(c) != 3 for c in class_colors)):
        raise ConfigError(f"got {len(class_colors)} class colours {list(class_colors)} for {len(names)} classes; expected (r, g, b) each")
    colors = palette(len(names), class_colors)[: len(names)]
    return {
        "model_card_version": MODEL_CARD_VERSION,
        "class_names": names,
        "class_colors": [[int(v) for v in color] for color in colors],
        "mpp": check_mpp(mpp),
        "mpp_source": mpp_source,
        "tile_size_px": None if tile_size_px is None else int(tile_size_px),
        "macenko": None if macenko is None else dict(macenko),
    }


def read_model_card(model_path: str | Path) -> dict[str, Any]:
    """The card inside a weaksegtf ``.keras`` file, ``{}`` for a model trained before cards existed (no TensorFlow)."""
    from weaksegtf.export.segmenter_file import read_keras_config

    card = read_keras_config(model_path).get("config", {}).get("model_card")
    return dict(card) if isinstance(card, dict) else {}


def _read_json(path: Path) -> dict:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DataError(f"cannot read {path}: {error}; expected the JSON file weaksegtf wrote there") from None
    if not isinstance(document, dict):
        raise DataError(f"{path} holds a {type(document).__name__}; expected a JSON object")
    return document


def prepared_set_info(folder: str | Path) -> dict[str, Any]:
    """What the tool that made a training folder recorded: ``{"mpp", "macenko", "source"}`` or ``{}``.

    Looks in ``folder`` and its parent for ``weakseg-prepare``'s ``summary.json``
    (``patch_mpp``, and ``stain_normalizer.json`` beside it) or the GlaS
    adapter's ``split.json`` (``mpp``).
    """
    folder = Path(folder)
    for place in (folder, folder.parent):
        summary, split = place / PREPARE_SUMMARY, place / GLAS_SPLIT
        if summary.is_file():
            document = _read_json(summary)
            if "patch_mpp" in document:
                from weaksegtf.preprocessing.macenko_normalizer import read_stain_reference

                stain = place / STAIN_REFERENCE
                return {
                    "mpp": check_mpp(document.get("patch_mpp"), f"patch_mpp in {summary}"),
                    "macenko": read_stain_reference(stain) if stain.is_file() else None,
                    "source": str(summary),
                }
        if split.is_file():
            document = _read_json(split)
            if "mpp" in document:
                return {"mpp": check_mpp(document.get("mpp"), f"mpp in {split}"), "macenko": None, "source": str(split)}
    return {}


def card_settings_from_folders(mpp: float | None, folders: Iterable[str | Path | None]) -> dict[str, Any]:
    """``model_card`` settings of a training run: ``--mpp`` wins, else what the training folders declare.

    Returns:
        ``{"mpp": float or None, "mpp_source": str or None, "macenko": dict or None}``.

    Raises:
        ConfigError: two training folders declare different resolutions or stain references
            (and no ``mpp`` settles the resolution).
    """
    infos = [prepared_set_info(f) for f in folders if f is not None]
    infos = [info for info in infos if info]
    macenkos = {json.dumps(info["macenko"], sort_keys=True) for info in infos if info.get("macenko") is not None}
    if len(macenkos) > 1:
        listed = ", ".join(info["source"] for info in infos)
        raise ConfigError(f"the training folders were stain-normalised to different references ({listed}); expected one reference")
    macenko = next((info["macenko"] for info in infos if info.get("macenko") is not None), None)
    if mpp is not None:
        return {"mpp": check_mpp(mpp, "--mpp"), "mpp_source": "--mpp", "macenko": macenko}
    declared = {info["mpp"] for info in infos if info.get("mpp") is not None}
    if len(declared) > 1:
        listed = ", ".join(f"{info['mpp']} um/px in {info['source']}" for info in infos)
        raise ConfigError(f"the training folders declare different resolutions ({listed}); expected one mpp, or pass --mpp")
    if not declared:
        return {"mpp": None, "mpp_source": None, "macenko": macenko}
    source = next(info["source"] for info in infos if info.get("mpp") is not None)
    return {"mpp": declared.pop(), "mpp_source": source, "macenko": macenko}


# ---------------------------------------------------------------- the card in an exported .onnx

METADATA_VERSION = 1
#: The single ONNX input: (B, H, W, 3) float32 RGB in [0, 255], H and W multiples of 16.
INPUT_NAME = "image"
SIZE_MULTIPLE_PX = SIZE_MULTIPLE
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
