"""Static int8 quantisation of an exported model, calibrated on the user's real tiles.

onnxruntime's ``quantize_static`` in QDQ format: weights int8 per output
channel, activations uint8 with ranges from MinMax calibration. On x86
CPUs without VNNI (AVX2 only, like our CI machines) onnxruntime recommends
uint8 activations and ``reduce_range`` (7-bit weights), which avoids the
saturation of the 16-bit ``vpmaddubsw`` intermediate; see the
``quantize_static`` docstring, "Choosing parameters for CPU inference".
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import numpy.typing as npt

from weaksegtf.errors import ExportError
from weaksegtf.export.metadata import INPUT_NAME

CALIBRATION_BATCH_SIZE = 8
QUANTIZATION = "int8 static QDQ (uint8 activations, int8 per-channel weights, reduce_range, MinMax)"


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


def quantize_int8(
    fp32_path: str | os.PathLike,
    int8_path: str | os.PathLike,
    calibration_tiles: npt.NDArray[np.float32],
    batch_size: int = CALIBRATION_BATCH_SIZE,
) -> None:
    """Write a static QDQ int8 copy of ``fp32_path`` to ``int8_path``.

    The fp32 model's ``metadata_props`` are kept, with ``quantization`` set.

    Args:
        fp32_path: str or path. The exported fp32 model.
        int8_path: str or path. Where to write the int8 model.
        calibration_tiles: float32 ``(N, H, W, 3)`` real tiles in [0, 255].
        batch_size: int. Calibration batch size. Defaults to ``8``.

    Raises:
        ExportError: onnxruntime cannot quantise the model.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    # quantize_static writes its augmented model and calibration files to a
    # temporary folder of its own; keep ours beside it, not in the cwd.
    with tempfile.TemporaryDirectory(prefix="weakseg-int8-") as scratch:
        raw = Path(scratch) / "int8.onnx"
        try:
            quantize_static(
                str(fp32_path), str(raw), _calibration_reader(calibration_tiles, batch_size),
                quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
            )
        except Exception as error:  # onnxruntime raises plain exceptions of many kinds
            raise ExportError(f"onnxruntime cannot quantise {fp32_path} to int8: {error}") from None
        model = onnx.load(str(raw))
    source = onnx.load(str(fp32_path), load_external_data=False)
    del model.metadata_props[:]
    for entry in source.metadata_props:
        model.metadata_props.add(key=entry.key, value=QUANTIZATION if entry.key == "quantization" else entry.value)
    model.doc_string = source.doc_string + f" Quantised: {QUANTIZATION}."
    Path(int8_path).write_bytes(model.SerializeToString())
