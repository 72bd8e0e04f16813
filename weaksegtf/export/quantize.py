"""Static int8 quantisation of an exported model, calibrated on the user's real tiles.

onnxruntime's ``quantize_static`` in QDQ format: weights int8 per output
channel, activations uint8, ranges from percentile calibration (99.999th).
Everything is quantised except two ends of the network, which stay float:

- the input normalisation (the 1x1 convolution of
  :mod:`weaksegtf.export.graph_rewrite`, or tf2onnx's ``Sub``/``Mul``), so raw
  pixels are not squeezed into one uint8 range for all three channels;
- the head: the last convolution before the mask logits and everything after
  it (the upsampling to input size and the classifier on the logits), where a
  rounding error moves a pixel's argmax directly.

Quantising the whole body, including pooling, residual additions and ReLUs,
lets onnxruntime keep activations in uint8 NHWC from one convolution to the
next; quantising only the convolutions left float ``MaxPool`` and
quantise/dequantise pairs between them and was barely faster than fp32.

``reduce_range`` (7-bit weights) avoids saturating the 16-bit intermediate
products of AVX2 CPUs without VNNI; with VNNI (``avx512_vnni``, ``avx_vnni``,
AMX) full-range weights are exact and more accurate. ``reduce_range=None``
chooses by the CPU that exports. On a GlaS-trained ResNet-18 segmenter, 128 px
tiles, 2 cores of an AVX-512 VNNI CPU: 2.57x faster than fp32 onnxruntime with
99.44% argmax agreement (full range) against 98.54% with ``reduce_range``.
``benchmarks/onnx_vs_keras.py`` measures the current setting.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import numpy.typing as npt

from weaksegtf.errors import ExportError
from weaksegtf.model_card import INPUT_NAME

CALIBRATION_BATCH_SIZE = 8


def quantization_description(reduce_range: bool) -> str:
    """What :func:`quantize_int8` did, for the model's metadata."""
    return (
        "int8 static QDQ: every operator but the input normalisation and the head, uint8 activations "
        f"(percentile calibration), int8 per-channel weights{' with reduce_range' if reduce_range else ''}"
    )


def cpu_flags() -> set[str]:
    """The CPU's feature flags from ``/proc/cpuinfo``; empty where there is none (not Linux)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))


def int8_dot_product_extensions() -> list[str]:
    """The CPU's int8 dot-product extensions; empty if none or unknown."""
    flags = cpu_flags()
    return [flag for flag in ("avx_vnni", "avx512_vnni", "amx_int8") if flag in flags]


def default_reduce_range() -> bool:
    """7-bit weights on x86 CPUs without VNNI (where 8-bit products can saturate), full range elsewhere."""
    import platform

    x86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
    return x86 and not int8_dot_product_extensions()


def float_nodes(graph) -> list[str]:
    """Names of the nodes that stay float: the input normalisation, the last convolution and all after it."""
    from weaksegtf.export.graph_rewrite import NORMALISATION_NODE

    keep = {node.name for node in graph.node if node.name == NORMALISATION_NODE or "preprocess" in node.name}
    producers = {output: node for node in graph.node for output in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    # Walk back from the mask output to the nearest convolution on every path: the head.
    heads, stack, seen = [], [o.name for o in graph.output if o.name.startswith("mask")], set()
    while stack:
        node = producers.get(stack.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        if node.op_type == "Conv":
            heads.append(node.name)
        else:
            stack.extend(node.input)
    # ... and everything downstream of it (upsampling, the classifier on the logits).
    frontier = [node for node in graph.node if node.name in heads]
    while frontier:
        node = frontier.pop()
        if node.name in keep:
            continue
        keep.add(node.name)
        frontier.extend(n for output in node.output for n in consumers.get(output, []))
    return sorted(keep)


def _calibration_reader(tiles: npt.NDArray[np.float32], batch_size: int):
    from onnxruntime.quantization import CalibrationDataReader

    class TileCalibrationReader(CalibrationDataReader):
        """Feeds calibration tiles to the model in batches."""

        def __init__(self) -> None:
            self._batches: Iterator[np.ndarray] = iter(
                [tiles[i:i + batch_size] for i in range(0, len(tiles), batch_size)]
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            return None if batch is None else {INPUT_NAME: batch}

    return TileCalibrationReader()


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """onnxruntime.quantization logs advice on the root logger and prints histogram progress."""
    root = logging.getLogger()
    previous = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(previous)


def quantize_int8(
    fp32_path: str | os.PathLike,
    int8_path: str | os.PathLike,
    calibration_tiles: npt.NDArray[np.float32],
    batch_size: int = CALIBRATION_BATCH_SIZE,
    reduce_range: bool | None = None,
) -> None:
    """Write a static QDQ int8 copy of ``fp32_path`` to ``int8_path``.

    The fp32 model's ``metadata_props`` are kept, with ``quantization`` set.

    Args:
        fp32_path: str or path. The exported fp32 model.
        int8_path: str or path. Where to write the int8 model.
        calibration_tiles: float32 ``(N, H, W, 3)`` real tiles in [0, 255].
        batch_size: int. Calibration batch size. Defaults to ``8``.
        reduce_range: bool or None. 7-bit weights; ``None`` (default) chooses
            by this CPU (:func:`default_reduce_range`). Export with ``True``
            when the model will run on AVX2 CPUs without VNNI.

    Raises:
        ExportError: onnxruntime cannot quantise the model.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if reduce_range is None:
        reduce_range = default_reduce_range()
    source = onnx.load(str(fp32_path), load_external_data=False)
    excluded = float_nodes(source.graph)
    # quantize_static writes its augmented model and calibration files to a
    # temporary folder of its own; keep ours beside it, not in the cwd.
    with tempfile.TemporaryDirectory(prefix="weakseg-int8-") as scratch:
        raw = Path(scratch) / "int8.onnx"
        try:
            with _quiet_quantizer():
                quantize_static(
                    str(fp32_path), str(raw), _calibration_reader(calibration_tiles, batch_size),
                    quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=reduce_range,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    nodes_to_exclude=excluded, calibrate_method=CalibrationMethod.Percentile,
                    extra_options={"CalibPercentile": 99.999},
                )
        except Exception as error:  # onnxruntime raises plain exceptions of many kinds
            raise ExportError(f"onnxruntime cannot quantise {fp32_path} to int8: {error}") from None
        model = onnx.load(str(raw))
    del model.metadata_props[:]
    description = quantization_description(reduce_range)
    for entry in source.metadata_props:
        model.metadata_props.add(key=entry.key, value=description if entry.key == "quantization" else entry.value)
    model.doc_string = source.doc_string + f" Quantised: {description}."
    Path(int8_path).write_bytes(model.SerializeToString())
