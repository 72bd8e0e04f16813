"""weaksegtf: weakly supervised segmentation for histopathology.

Importing the top-level package is cheap and never imports TensorFlow, so the
inference path (slides, tiling, onnxruntime) can be installed without it.
Training code lives in ``weaksegtf.models``, ``weaksegtf.losses`` and
``weaksegtf.training``, which import Keras on first use.
"""

__version__ = "0.1.0"
