"""What an exported ``.onnx`` says about itself: the names of :mod:`weaksegtf.model_card`, where they now live.

The ONNX metadata is the model card in the exported file; it is written and
read in :mod:`weaksegtf.model_card` (TensorFlow-free, and importing it does not
import this package), which ``weakseg-infer`` imports. These names stay here
for code that imports them from ``weaksegtf.export.metadata``.
"""

from weaksegtf.model_card import (  # noqa: F401 - re-exported
    DEFAULT_OUTPUTS,
    INPUT_NAME,
    METADATA_KEYS,
    METADATA_VERSION,
    OUTPUT_NAMES,
    SIZE_MULTIPLE_PX,
    OnnxMetadata,
    check_outputs,
    read_onnx_metadata,
    weights_sha256,
)
