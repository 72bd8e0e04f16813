"""``export_model``: a weaksegtf ``.keras`` model to verified ONNX (fp32, optional int8) and a TF Serving SavedModel."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

import weaksegtf
from weaksegtf.constants import SIZE_MULTIPLE
from weaksegtf.data.images import PathLike
from weaksegtf.errors import ConfigError, DataError, ExportError, ModelFileError, OutputError, ParityError
from weaksegtf.export.export_report import ExportReport
from weaksegtf.export.parity import ParityReport, compare
from weaksegtf.export.sample_tiles import Shape, TileSource, check_shapes, image_files
from weaksegtf.export.segmenter_file import Segmenter, read_keras_config
from weaksegtf.export.staged_outputs import StagedOutputs
from weaksegtf.model_card import DEFAULT_OUTPUTS, INPUT_NAME, OnnxMetadata, check_outputs, weights_sha256
from weaksegtf.output_guard import OutputFolder, check_output_file

DEFAULT_TOLERANCE = 1e-4
DEFAULT_MIN_INT8_AGREEMENT = 0.99
DEFAULT_PARITY_BATCH_SIZES = (1, 4)
DEFAULT_CALIBRATION_TILES = 32
_DEFAULT_TILE_SIZE_PX = 128
COMMAND = "weakseg-export"
#: What TensorFlow writes into a SavedModel folder (checked against the folder before any work).
SAVEDMODEL_ENTRIES = ("saved_model.pb", "variables", "assets", "fingerprint.pb")


def export_model(
    model_path: PathLike,
    onnx_path: PathLike,
    savedmodel_dir: PathLike | None = None,
    *,
    opset: int | None = None,
    outputs: Sequence[str] = DEFAULT_OUTPUTS,
    int8: bool = False,
    calibration_dir: PathLike | None = None,
    int8_path: PathLike | None = None,
    samples_dir: PathLike | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    min_int8_agreement: float = DEFAULT_MIN_INT8_AGREEMENT,
    mpp: float | None = None,
    tile_size_px: int | None = None,
    macenko: Mapping[str, Any] | PathLike | None = None,
    class_colors: Sequence[Sequence[int]] | None = None,
    parity_shapes_px: Sequence[Shape] | None = None,
    parity_batch_sizes: Sequence[int] = DEFAULT_PARITY_BATCH_SIZES,
    calibration_tiles: int = DEFAULT_CALIBRATION_TILES,
    int8_reduce_range: bool | None = None,
    seed: int = 0,
    overwrite: bool = False,
    _perturb: Callable[[Any], None] | None = None,
) -> ExportReport:
    """Export a weaksegtf model to ONNX (and optionally int8 ONNX and a SavedModel), verifying each.

    The ONNX model takes ``image``, ``(B, H, W, 3)`` float32 RGB in [0, 255]
    with dynamic batch, height and width (multiples of 16); normalisation is
    inside the graph. Its outputs are named ``mask_logits`` ``(B, H, W, C)``,
    ``label_logits`` ``(B, C)`` and, on request, ``mask_probabilities``. Its
    ``metadata_props`` carry everything a slide inferencer needs (see
    :class:`OnnxMetadata`; read them back with ``read_onnx_metadata``).

    After writing, onnxruntime and Keras run on the same inputs: real crops
    from ``samples_dir`` or random pixels, at two tile shapes and two batch
    sizes. Every output goes to a temporary file first and is renamed only
    when every check passed: a failed check raises and leaves nothing behind.
    Works for any weaksegtf model whose outputs are ``{"mask", "label"}``.

    Args:
        model_path: str or path. A weaksegtf ``.keras`` model.
        onnx_path: str or path. Where to write the fp32 ONNX model.
        savedmodel_dir: str or path, optional. Where to write a TF Serving
            SavedModel (for TF Serving, a version folder such as
            ``models/weakseg/1``). Defaults to ``None`` (none).
        opset: int, optional. ONNX opset, 7 to 18 (13 to 18 with int8). Defaults to ``17``.
        outputs: sequence of str. ONNX outputs, ``mask_logits`` first. Defaults to
            ``("mask_logits", "label_logits")``.
        int8: bool. Also write a static QDQ int8 model. Defaults to ``False``.
        calibration_dir: str or path, optional. Real tiles or images to calibrate
            int8 on (required with ``int8``). Defaults to ``None``.
        int8_path: str or path, optional. Where to write the int8 model.
            Defaults to ``onnx_path`` with suffix ``.int8.onnx``.
        samples_dir: str or path, optional. Real images for the parity checks.
            Defaults to ``None``: random pixels (and, for int8, other crops of
            the calibration images).
        tolerance: float. Largest allowed difference of logits (and
            SavedModel probabilities) from Keras, scaled by ``max(1, |Keras value|)``
            (:class:`weaksegtf.export.parity.ParityReport`). Defaults to ``1e-4``.
        min_int8_agreement: float. Smallest allowed per-pixel argmax agreement
            of int8 with fp32. Defaults to ``0.99``.
        mpp: float, optional. Microns per pixel of the training tiles, stored in the
            metadata. Defaults to the model card's (``weaksegtf.model_card``), else unknown.
        tile_size_px: int, optional. Training tile side, stored in the metadata;
            also the calibration tile size and the first parity shape. Defaults
            to the model card's, else ``None`` (unknown; 128 px tiles are used).
        macenko: dict or path, optional. Macenko stain reference used in training
            (a dict or a ``MacenkoNormalizer.save`` JSON file), stored in the
            metadata. Defaults to the model card's.
        class_colors: sequence of (r, g, b), optional. Display colours. Defaults to
            the model card's, else ``weaksegtf.visualize.DEFAULT_COLORS``.
        parity_shapes_px: sequence of two (height, width), optional. Parity tile
            shapes, multiples of 16. Defaults to ``(t, t)`` and ``(t + 32, 2 t)``
            for tile size ``t``.
        parity_batch_sizes: sequence of int. Parity batch sizes. Defaults to ``(1, 4)``.
        calibration_tiles: int. Number of int8 calibration tiles. Defaults to ``32``.
        int8_reduce_range: bool or None. 7-bit int8 weights, for AVX2 CPUs
            without VNNI; ``None`` (default) chooses by this CPU (see
            :func:`weaksegtf.export.quantize.default_reduce_range`).
        seed: int. Seed of tile choice and random inputs. Defaults to ``0``.
        overwrite: bool. Replace existing outputs that weaksegtf wrote (an ONNX
            file with weaksegtf metadata; SavedModel entries recorded in the
            folder's ``.weaksegtf-outputs.json``); other files are never
            replaced or removed. Without it, an existing ONNX file is replaced
            only by an export of the same weights, and a non-empty SavedModel
            folder is refused. Defaults to ``False``.
        _perturb: callable, optional. For tests only: changes the ``onnx.ModelProto``
            before it is written, to force a parity failure.

    Returns:
        ExportReport: the paths written and the parity reports.

    Raises:
        ModelFileError: the model file is missing or not a weaksegtf model.
        DataError: a calibration or sample folder is missing or holds no images.
        ConfigError: incompatible settings, such as an opset onnxruntime cannot run.
        OutputError: an output is a folder where a file is expected (or the
            reverse), is not writable, or exists and may not be replaced (see ``overwrite``).
        ParityError: an export disagrees with Keras beyond ``tolerance``, or int8
            with fp32 below ``min_int8_agreement``; nothing is written.
        ExportError: tf2onnx, onnxruntime or TensorFlow cannot write or run an export.

    Example:
    >>> report = export_model("model.keras", "model.onnx", int8=True,  # doctest: +SKIP
    ...                       calibration_dir="glas-train/images", mpp=1.24, tile_size_px=128)
    >>> print(report.format())  # doctest: +SKIP
    """
    start = time.perf_counter()
    # --- Checks that need no TensorFlow, so bad input fails in milliseconds. ---
    settings = {key: value for key, value in locals().items() if key not in ("_perturb", "start")}
    model_path, onnx_path = Path(model_path), Path(onnx_path)
    card = read_keras_config(model_path).get("config", {}).get("model_card") or {}
    # The model card (written by training) fills what the arguments leave out.
    mpp = card.get("mpp") if mpp is None else mpp
    tile_size_px = card.get("tile_size_px") if tile_size_px is None else tile_size_px
    macenko_where = f"in the model card of {model_path}" if macenko is None else None
    macenko = card.get("macenko") if macenko is None else macenko
    class_colors = card.get("class_colors") if class_colors is None else class_colors
    outputs = check_outputs(outputs)
    _check_settings(tolerance, min_int8_agreement, mpp, tile_size_px, calibration_tiles, parity_batch_sizes)
    int8_path = Path(int8_path) if int8_path is not None else onnx_path.with_suffix(".int8.onnx")
    same_weights_required, savedmodel_folder = _check_output_paths(
        model_path, onnx_path, int8_path if int8 else None, savedmodel_dir, overwrite
    )
    if int8 and calibration_dir is None:
        raise ConfigError("int8 quantisation needs calibration_dir (--calibration DIR), a folder of real tiles")
    if calibration_dir is not None:
        image_files(calibration_dir, "calibration")
    if samples_dir is not None:
        image_files(samples_dir, "sample")
    tile = tile_size_px or _DEFAULT_TILE_SIZE_PX
    shapes = check_shapes(parity_shapes_px or [(tile, tile), (tile + 32, 2 * tile)])
    if macenko is not None:
        from weaksegtf.preprocessing.macenko_normalizer import read_stain_reference

        macenko = read_stain_reference(macenko, macenko_where)
    if int8 and int8_path.resolve() == onnx_path.resolve():
        raise ConfigError(f"int8_path {int8_path} is the fp32 output path; expected a different file")

    from weaksegtf.export.graph_rewrite import simplify_graph
    from weaksegtf.export.onnx_export import check_opset, keras_to_onnx, set_metadata
    from weaksegtf.export.segmenter_file import load_segmenter

    opset = check_opset(opset, int8=int8)
    segmenter = load_segmenter(model_path)
    metadata = _metadata(segmenter, outputs, mpp, tile_size_px, macenko, class_colors, settings)
    _require_same_weights(same_weights_required, metadata.weights_sha256)
    samples = TileSource(samples_dir, seed)
    batches = [samples.batch(b, h, w) for h, w in shapes for b in parity_batch_sizes]

    with StagedOutputs() as staged:
        onnx_tmp = staged.file(onnx_path)
        proto = keras_to_onnx(segmenter.model, opset, outputs)
        simplify_graph(proto)  # exact; the parity check below covers it
        set_metadata(proto, metadata)
        if _perturb is not None:
            _perturb(proto)
        onnx_tmp.write_bytes(proto.SerializeToString())
        fp32 = _onnx_runner(onnx_tmp, f"the opset {opset} export of {model_path}")
        parity = compare(
            fp32, segmenter, batches, what="onnxruntime fp32 vs Keras",
            source=samples.description, tolerance=tolerance,
        )
        _require(parity, onnx_path)

        savedmodel_parity = None
        if savedmodel_dir is not None:
            from weaksegtf.export.savedmodel_export import export_savedmodel, savedmodel_runner

            savedmodel_tmp = staged.directory(savedmodel_dir)
            try:
                export_savedmodel(segmenter.model, savedmodel_tmp)
                serving = savedmodel_runner(savedmodel_tmp)
            except Exception as error:  # TensorFlow's own error types
                raise ExportError(f"cannot write a SavedModel of {model_path}: {type(error).__name__}: {error}") from None
            savedmodel_parity = compare(
                serving, segmenter, [np.floor(b) for b in batches],  # the signature takes uint8
                what="SavedModel serving_default vs Keras", source=samples.description, tolerance=tolerance,
            )
            _require(savedmodel_parity, Path(savedmodel_dir))

        int8_parity = None
        if int8:
            from weaksegtf.export.quantize import quantize_int8

            int8_tmp = staged.file(int8_path)
            calibration = TileSource(calibration_dir, seed, "calibration")
            quantize_int8(onnx_tmp, int8_tmp, calibration.batch(calibration_tiles, tile, tile),
                          reduce_range=int8_reduce_range)
            # Held-out inputs: the samples, or other crops of the calibration images.
            evaluation = samples if samples_dir is not None else TileSource(calibration_dir, seed + 1, "calibration")
            int8_batches = batches if samples_dir is not None else [
                evaluation.batch(b, h, w) for h, w in shapes for b in parity_batch_sizes
            ]
            int8_parity = compare(
                _onnx_runner(int8_tmp, f"the int8 model of {model_path}"), fp32, int8_batches,
                what="onnxruntime int8 vs fp32", source=evaluation.description, min_agreement=min_int8_agreement,
            )
            _require(int8_parity, int8_path)
        savedmodel_entries = staged.entries(savedmodel_dir) if savedmodel_dir is not None else []
        if savedmodel_folder is not None:
            savedmodel_folder.check(savedmodel_entries)  # again: what TensorFlow wrote, just before replacing
        staged.commit()
        if savedmodel_folder is not None:
            savedmodel_folder.commit(savedmodel_entries)

    return ExportReport(
        onnx_path=onnx_path, opset=opset, metadata=metadata, parity=parity,
        savedmodel_dir=None if savedmodel_dir is None else Path(savedmodel_dir),
        savedmodel_parity=savedmodel_parity,
        int8_path=int8_path if int8 else None, int8_parity=int8_parity,
        seconds=time.perf_counter() - start,
    )


def _require(report: ParityReport, path: Path) -> None:
    if not report.passed:
        raise ParityError(f"{report.failure()}; {path} and the other outputs were not written", report)


def _onnx_runner(path: Path, what: str):
    """onnxruntime on ``path`` as a parity runner; ExportError if onnxruntime cannot load it."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime's exception types are not exported
        raise ExportError(f"onnxruntime {ort.__version__} cannot run {what}: {error}") from None
    names = [o.name for o in session.get_outputs()]

    def run(images: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(names, session.run(names, {INPUT_NAME: np.ascontiguousarray(images, np.float32)})))

    return run


def _metadata(
    segmenter: Segmenter,
    outputs: Sequence[str],
    mpp: float | None,
    tile_size_px: int | None,
    macenko: dict | None,
    class_colors: Sequence[Sequence[int]] | None,
    settings: Mapping[str, Any] | None = None,
) -> OnnxMetadata:
    from weaksegtf.provenance import provenance
    from weaksegtf.visualize import palette

    n = segmenter.num_classes
    if class_colors is not None and (len(class_colors) != n or any(len(c) != 3 for c in class_colors)):
        raise ConfigError(f"got {len(class_colors)} class colours {list(class_colors)} for {n} classes; expected (r, g, b) each")
    colors = palette(n, class_colors)[:n]
    return OnnxMetadata(
        class_names=tuple(segmenter.class_names),
        class_colors=tuple(tuple(int(v) for v in c) for c in colors),
        weights_sha256=weights_sha256(np.asarray(w) for w in segmenter.model.weights),
        weaksegtf_version=weaksegtf.__version__,
        architecture=segmenter.architecture,
        mpp=None if mpp is None else float(mpp),
        tile_size_px=tile_size_px,
        normalization=_normalization(segmenter.model, macenko is not None),
        macenko=macenko,
        outputs=tuple(outputs),
        provenance=provenance(**dict(settings or {})),
    )


def _normalization(model: Any, has_macenko: bool) -> dict[str, Any]:
    """Describe the in-graph normalisation from the model's Normalization layer, if it has one."""
    import keras

    description: dict[str, Any] = {
        "in_graph": True,
        "input": "RGB float32 in [0, 255]; do not rescale or normalise before the model",
    }
    layers = [layer for layer in model.layers if isinstance(layer, keras.layers.Normalization)]
    if len(layers) == 1:
        mean = np.asarray(layers[0].mean, np.float64).ravel()
        std = np.sqrt(np.asarray(layers[0].variance, np.float64).ravel())
        description.update(
            formula="(x - mean) / std per RGB channel, inside the graph",
            mean=[round(float(v), 6) for v in mean],
            std=[round(float(v), 6) for v in std],
        )
    if has_macenko:
        description["stain"] = "apply the Macenko reference in 'macenko' to the RGB uint8 tile before the model"
    return description


def _check_settings(tolerance, min_int8_agreement, mpp, tile_size_px, calibration_tiles, batch_sizes) -> None:
    if not (isinstance(tolerance, (int, float)) and math.isfinite(tolerance) and tolerance >= 0):
        raise ConfigError(f"tolerance must be a finite number >= 0, got {tolerance!r}")
    if not (isinstance(min_int8_agreement, (int, float)) and 0 <= min_int8_agreement <= 1):
        raise ConfigError(f"min_int8_agreement must be between 0 and 1, got {min_int8_agreement!r}")
    if mpp is not None and not (isinstance(mpp, (int, float)) and math.isfinite(mpp) and mpp > 0):
        raise ConfigError(f"mpp must be a positive number of microns per pixel, got {mpp!r}")
    if tile_size_px is not None and (isinstance(tile_size_px, bool) or not isinstance(tile_size_px, int)
                                     or tile_size_px <= 0 or tile_size_px % SIZE_MULTIPLE):
        raise ConfigError(f"tile_size_px must be a positive multiple of 16, got {tile_size_px!r}")
    if isinstance(calibration_tiles, bool) or not isinstance(calibration_tiles, int) or calibration_tiles < 1:
        raise ConfigError(f"calibration_tiles must be a positive int, got {calibration_tiles!r}")
    if not batch_sizes or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in batch_sizes):
        raise ConfigError(f"parity_batch_sizes must be positive ints, got {list(batch_sizes)}")


def _check_output_paths(
    model_path: Path, onnx_path: Path, int8_path: Path | None, savedmodel_dir: PathLike | None, overwrite: bool
) -> tuple[dict[Path, str], OutputFolder | None]:
    """Every output checked before TensorFlow starts (see ``export_model``'s ``overwrite``).

    Returns:
        ``{existing ONNX path: its weights hash}`` for files that may be replaced
        only by an export of the same weights (checked once the model is loaded),
        and the checked SavedModel folder (or ``None``).
    """
    files = [(onnx_path, "ONNX output")] + ([(int8_path, "int8 ONNX output")] if int8_path is not None else [])
    for path, what in files:
        if path.resolve() == model_path.resolve():
            raise ConfigError(f"{what} {path} is the model being exported; expected another file")
    if savedmodel_dir is not None:
        savedmodel = Path(savedmodel_dir).resolve()
        if savedmodel == onnx_path.resolve():
            raise ConfigError(f"the SavedModel folder and the ONNX file are both {onnx_path}")
    same_weights: dict[Path, str] = {}
    for path, what in files:
        existing = _weaksegtf_export_weights(path)
        is_export = lambda _: existing is not None  # noqa: E731
        # A weaksegtf export may be replaced without --overwrite by one of the same weights,
        # confirmed once the model is loaded (_require_same_weights).
        check_output_file(path, what, overwrite=overwrite, replaceable=is_export, identical=is_export)
        if existing is not None and not overwrite:
            same_weights[path] = existing
    folder = None
    if savedmodel_dir is not None:
        folder = OutputFolder(Path(savedmodel_dir), COMMAND, overwrite=overwrite, what="SavedModel folder")
        folder.check(SAVEDMODEL_ENTRIES)
    return same_weights, folder


def _weaksegtf_export_weights(path: Path) -> str | None:
    """The ``weights_sha256`` of an existing weaksegtf ONNX export at ``path``, or ``None``."""
    if not path.is_file() or path.is_symlink():
        return None
    from weaksegtf.model_card import read_onnx_metadata

    try:
        return read_onnx_metadata(path).weights_sha256 or None
    except ModelFileError:
        return None


def _require_same_weights(existing: Mapping[Path, str], weights: str) -> None:
    for path, sha in existing.items():
        if sha != weights:
            raise OutputError(
                f"{path} already holds an export of other weights (sha256 {sha[:12]}..., this model's is "
                f"{weights[:12]}...); pass --overwrite (overwrite=True) to replace it, or choose another path"
            )
