"""What ``export_model`` wrote and how closely each export matches the Keras model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from weaksegtf.export.parity import ParityReport
from weaksegtf.model_card import INPUT_NAME, OnnxMetadata


@dataclass(frozen=True)
class ExportReport:
    """The files an export wrote, with their parity reports.

    Args:
        onnx_path: Path. The fp32 ONNX model.
        opset: int. Its ONNX opset.
        metadata: OnnxMetadata. What it carries in ``metadata_props``.
        parity: ParityReport. onnxruntime fp32 against Keras.
        savedmodel_dir: Path, optional. The TF Serving SavedModel. Defaults to ``None``.
        savedmodel_parity: ParityReport, optional. Its ``serving_default`` against Keras. Defaults to ``None``.
        int8_path: Path, optional. The int8 ONNX model. Defaults to ``None``.
        int8_parity: ParityReport, optional. int8 against fp32 onnxruntime. Defaults to ``None``.
        seconds: float. Wall time of the export. Defaults to ``0.0``.

    Example:
    >>> report = export_model("model.keras", "model.onnx")  # doctest: +SKIP
    >>> report.parity.max_abs_diff < 1e-4, report.parity.agreement  # doctest: +SKIP
    (True, 1.0)
    """

    onnx_path: Path
    opset: int
    metadata: OnnxMetadata
    parity: ParityReport
    savedmodel_dir: Path | None = None
    savedmodel_parity: ParityReport | None = None
    int8_path: Path | None = None
    int8_parity: ParityReport | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict:
        """JSON-ready summary (paths as strings)."""
        return {
            "onnx_path": str(self.onnx_path),
            "opset": self.opset,
            "outputs": list(self.metadata.outputs),
            "weights_sha256": self.metadata.weights_sha256,
            "parity": self.parity.to_dict(),
            "savedmodel_dir": None if self.savedmodel_dir is None else str(self.savedmodel_dir),
            "savedmodel_parity": None if self.savedmodel_parity is None else self.savedmodel_parity.to_dict(),
            "int8_path": None if self.int8_path is None else str(self.int8_path),
            "int8_parity": None if self.int8_parity is None else self.int8_parity.to_dict(),
            "seconds": round(self.seconds, 1),
            "provenance": self.metadata.provenance,
        }

    def format(self) -> str:
        """Human-readable summary: files, then one parity table per export."""
        lines = [
            f"onnx:       {self.onnx_path} (opset {self.opset}; input '{INPUT_NAME}' float32 RGB [0, 255], "
            f"outputs {', '.join(self.metadata.outputs)})",
            f"classes:    {', '.join(self.metadata.class_names)}",
        ]
        if self.int8_path is not None:
            lines.append(f"int8:       {self.int8_path}")
        if self.savedmodel_dir is not None:
            lines.append(f"savedmodel: {self.savedmodel_dir} (serving_default: uint8 image -> probabilities, mask)")
        for parity in (self.parity, self.savedmodel_parity, self.int8_parity):
            if parity is not None:
                lines += ["", parity.format()]
        return "\n".join(lines)
