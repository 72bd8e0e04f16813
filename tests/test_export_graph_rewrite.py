"""The exact ONNX rewrites of weaksegtf.export.graph_rewrite and the int8 float-node choice, on hand-made graphs."""

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from weaksegtf.export.graph_rewrite import NORMALISATION_NODE, simplify_graph
from weaksegtf.export.quantize import float_nodes, quantization_description

MEAN = np.array([[[[180.0, 120.0, 170.0]]]], np.float32)
SCALE = np.array([[[[1 / 40.0, 1 / 50.0, 1 / 30.0]]]], np.float32)


def _stem_graph(pad_source: str = "relu"):
    """image NHWC -> Sub -> Mul -> Transpose -> Conv 3x3 -> Relu -> Pad -> MaxPool -> Conv 1x1 -> mask_logits."""
    rng = np.random.default_rng(0)
    initializers = [
        numpy_helper.from_array(MEAN, "mean"), numpy_helper.from_array(SCALE, "scale"),
        numpy_helper.from_array(rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.normal(0, 0.3, (2, 4, 1, 1)).astype(np.float32), "w2"),
        numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads"),
    ]
    nodes = [
        helper.make_node("Sub", ["image", "mean"], ["centred"], name="model/preprocess_1/Sub"),
        helper.make_node("Mul", ["centred", "scale"], ["scaled"], name="model/preprocess_1/truediv"),
        helper.make_node("Transpose", ["scaled"], ["nchw"], perm=[0, 3, 1, 2], name="to_nchw"),
        helper.make_node("Conv", ["nchw", "w1"], ["conv1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="stem"),
        helper.make_node("Relu", ["conv1"], ["relu"], name="relu"),
        helper.make_node("Pad", [pad_source, "pads"], ["padded"], name="pool_pad"),
        helper.make_node("MaxPool", ["padded"], ["pooled"], kernel_shape=[3, 3], strides=[2, 2], name="pool"),
        helper.make_node("Conv", ["pooled", "w2"], ["logits_nchw"], kernel_shape=[1, 1], name="classify"),
        helper.make_node("Transpose", ["logits_nchw"], ["mask_logits"], perm=[0, 2, 3, 1], name="to_nhwc"),
    ]
    graph = helper.make_graph(
        nodes, "stem", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [None, None, None, 3])],
        [helper.make_tensor_value_info("mask_logits", TensorProto.FLOAT, None)], initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model, x):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": x})[0]


def test_both_rewrites_apply_and_keep_the_outputs():
    x = np.random.default_rng(1).uniform(0, 255, (2, 20, 24, 3)).astype(np.float32)
    model = _stem_graph()
    before = _run(model, x)
    assert simplify_graph(model) == ["normalisation_as_conv", "pad_into_maxpool"]
    after = _run(model, x)
    ops = [node.op_type for node in model.graph.node]
    assert ops == ["Transpose", "Conv", "Conv", "Relu", "MaxPool", "Conv", "Transpose"]
    assert model.graph.node[1].name == NORMALISATION_NODE
    pool = model.graph.node[4]
    assert [list(a.ints) for a in pool.attribute if a.name == "pads"] == [[1, 1, 1, 1]]
    assert {i.name for i in model.graph.initializer} == {
        "w1", "w2", f"{NORMALISATION_NODE}/weight", f"{NORMALISATION_NODE}/bias"}
    assert before.shape == after.shape == (2, 10, 12, 2)
    np.testing.assert_allclose(after, before, atol=1e-5)


def test_a_pad_of_a_signed_tensor_is_not_folded():
    # Padding a convolution output (negative values possible) with zeros is not MaxPool's -inf padding.
    model = _stem_graph(pad_source="conv1")
    x = np.random.default_rng(2).uniform(0, 255, (1, 16, 16, 3)).astype(np.float32)
    before = _run(model, x)
    assert simplify_graph(model) == ["normalisation_as_conv"]
    assert "Pad" in [node.op_type for node in model.graph.node]
    np.testing.assert_allclose(_run(model, x), before, atol=1e-5)


def test_a_graph_without_the_patterns_is_left_alone():
    model = _stem_graph()
    model.graph.node[2].attribute[0].ints[:] = [0, 3, 2, 1]  # not the NHWC -> NCHW transpose
    model.graph.node[5].input[0] = "conv1"
    before = model.SerializeToString()
    assert simplify_graph(model) == []
    assert model.SerializeToString() == before


def test_int8_keeps_the_normalisation_and_the_head_in_float():
    model = _stem_graph()
    assert float_nodes(model.graph) == sorted(["model/preprocess_1/Sub", "model/preprocess_1/truediv",
                                               "classify", "to_nhwc"])
    simplify_graph(model)
    assert float_nodes(model.graph) == sorted([NORMALISATION_NODE, "classify", "to_nhwc"])


@pytest.mark.parametrize("reduce_range, words", [(True, "with reduce_range"), (False, "weights")])
def test_quantization_description_names_the_weight_range(reduce_range, words):
    text = quantization_description(reduce_range)
    assert text.startswith("int8 static QDQ") and text.endswith(words)
