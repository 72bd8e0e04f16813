"""Export: ONNX (fp32, optional int8) for onnxruntime and a SavedModel for TF Serving, with parity checks.

Importing this package does not import TensorFlow: ``export_model`` imports it
when called, and ``read_onnx_metadata`` never does, so a TensorFlow-free
slide inferencer can read an exported model's classes, mpp, tile size and
normalisation.
"""

from weaksegtf.export.export_report import ExportReport
from weaksegtf.export.exporter import export_model
from weaksegtf.export.metadata import (
    INPUT_NAME,
    METADATA_KEYS,
    OUTPUT_NAMES,
    OnnxMetadata,
    read_onnx_metadata,
    weights_sha256,
)
from weaksegtf.export.parity import ParityCase, ParityReport

__all__ = [
    "INPUT_NAME",
    "METADATA_KEYS",
    "OUTPUT_NAMES",
    "ExportReport",
    "OnnxMetadata",
    "ParityCase",
    "ParityReport",
    "export_model",
    "read_onnx_metadata",
    "weights_sha256",
]
