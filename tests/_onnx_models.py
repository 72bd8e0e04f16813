"""Tiny hand-built ONNX segmenters with a known receptive field, carrying weakseg-export metadata.

They take ``image`` (B, H, W, 3) float32 RGB in [0, 255] and give ``mask_logits``
(B, H, W, C) and ``label_logits`` (B, C), like an exported WeakSegmenter, but
build in milliseconds and run thousands of tiles per second.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from weaksegtf.export.metadata import OnnxMetadata

CLASSES = ("background", "nuclei", "stroma")
COLORS = ((240, 240, 240), (60, 60, 200), (220, 60, 140))
#: What weakseg-infer --probabilities writes per slide for a model with these classes (summary.json last).
OUTPUT_FILES = ["labels.tif", "probabilities_0_background.tif", "probabilities_1_nuclei.tif",
                "probabilities_2_stroma.tif", "overlay.png", "annotations.geojson"]

#: Per-pixel logits of the colour classifier: white glass is background, bluer
#: pixels are "nuclei", redder ones "stroma".
COLOR_WEIGHTS = np.array([[0.0, 0.05, 0.0], [-0.03, 0.0, 0.03], [0.03, 0.0, -0.03]], np.float32)
COLOR_BIAS = np.array([-9.0, 0.0, 0.0], np.float32)


def _save(path: Path, nodes, initializers, mpp: float | None, tile_size_px: int | None, macenko=None) -> Path:
    from onnx import TensorProto, checker, helper, save

    graph = helper.make_graph(
        nodes, "tiny_segmenter",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", "height", "width", 3])],
        [helper.make_tensor_value_info("mask_logits", TensorProto.FLOAT, ["batch", "height", "width", len(CLASSES)]),
         helper.make_tensor_value_info("label_logits", TensorProto.FLOAT, ["batch", len(CLASSES)])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    metadata = OnnxMetadata(CLASSES, COLORS, "tiny", "0.1.0", "tiny", mpp=mpp, tile_size_px=tile_size_px,
                            macenko=macenko)
    helper.set_model_props(model, metadata.to_props())
    checker.check_model(model)
    save(model, str(path))
    return Path(path)


def _head(last: str) -> list:
    from onnx import helper

    return [
        helper.make_node("Transpose", [last], ["mask_logits"], perm=[0, 2, 3, 1]),
        helper.make_node("ReduceMean", [last], ["label_logits_4d"], axes=[2, 3], keepdims=0),
        helper.make_node("Identity", ["label_logits_4d"], ["label_logits"]),
    ]


def color_classifier(path: Path, mpp: float | None = 2.0, tile_size_px: int | None = 64, macenko=None) -> Path:
    """A 1x1 convolution: each pixel's class from its colour alone (receptive field 1 px); ``macenko`` is a stain
    reference (``MacenkoNormalizer.save``'s document) stored in the metadata, applied to tiles before the model."""
    from onnx import helper, numpy_helper

    nodes = [
        helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "w", "b"], ["logits"], kernel_shape=[1, 1]),
        *_head("logits"),
    ]
    initializers = [numpy_helper.from_array(COLOR_WEIGHTS.reshape(3, 3, 1, 1), "w"),
                    numpy_helper.from_array(COLOR_BIAS, "b")]
    return _save(path, nodes, initializers, mpp, tile_size_px, macenko)


def conv3x3_model(path: Path, mpp: float | None = 2.0, tile_size_px: int | None = 64, seed: int = 0) -> Path:
    """Two 3x3 convolutions with a ReLU between: receptive field 5x5 px, so 2 px of context per side."""
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, 0.02, (8, 3, 3, 3)).astype(np.float32)
    b1 = rng.normal(0, 1.0, 8).astype(np.float32)
    w2 = rng.normal(0, 0.3, (len(CLASSES), 8, 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "w1", "b1"], ["h"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Conv", ["r", "w2"], ["logits"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        *_head("logits"),
    ]
    initializers = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(b1, "b1"),
                    numpy_helper.from_array(w2, "w2")]
    return _save(path, nodes, initializers, mpp, tile_size_px)
