"""Exact rewrites of the tf2onnx graph that make onnxruntime faster, fp32 and int8 alike.

tf2onnx keeps the Keras model's NHWC input normalisation, ``(x - mean) * (1 / std)``,
in front of the NHWC -> NCHW transpose, and the ResNet stem's ``ZeroPadding2D``
as a ``Pad`` before the ``MaxPool``. onnxruntime runs both slowly: broadcasting
a 3-vector over the last axis costs as much as the stem convolution, and a
separate ``Pad`` copies the largest activation of the network. Two rewrites
give the same outputs (to float rounding) with less work:

- ``normalisation_as_conv``: ``Transpose`` first, then one 1x1 ``Conv`` with a
  diagonal weight ``1 / std`` and bias ``-mean / std``. It runs in NCHW with the
  other convolutions, and the int8 quantiser can leave it in float by name
  (:data:`NORMALISATION_NODE`), so raw pixels are never quantised.
- ``pad_into_maxpool``: a zero ``Pad`` of a ``Relu`` output followed by
  ``MaxPool`` becomes the ``MaxPool``'s own ``pads``. ``MaxPool`` pads with
  ``-inf``; the ``Relu`` output is never negative and every window keeps at least
  one real value (pads are smaller than the kernel), so the maximum is unchanged.

On the ResNet-18 segmenter and 2 cores, fp32 onnxruntime went from 2.66 to
2.27 ms per 128 px tile (``benchmarks/onnx_vs_keras.py`` measures the current
graph). Each rewrite applies only where its exact pattern is found; anything
else is left as tf2onnx wrote it. numpy and onnx only (no TensorFlow).
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Name of the 1x1 convolution that holds the input normalisation after the rewrite.
NORMALISATION_NODE = "weaksegtf_normalise"


def simplify_graph(proto: Any) -> list[str]:
    """Apply every rewrite that matches ``proto`` (an ``onnx.ModelProto``) in place.

    Returns:
        The names of the rewrites applied, in order.
    """
    applied = []
    if _normalisation_as_conv(proto.graph):
        applied.append("normalisation_as_conv")
    if _pad_into_maxpool(proto.graph):
        applied.append("pad_into_maxpool")
    return applied


def _constants(graph) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    return {init.name: numpy_helper.to_array(init) for init in graph.initializer}


def _consumers(graph, tensor: str) -> list:
    return [node for node in graph.node if tensor in node.input]


def _only_consumer(graph, tensor: str, op_type: str):
    users = _consumers(graph, tensor)
    if len(users) != 1 or users[0].op_type != op_type or any(o.name == tensor for o in graph.output):
        return None
    return users[0]


def _attribute(node, name: str, default=None):
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _normalisation_as_conv(graph) -> bool:
    """``Sub(image, m) -> Mul(s) -> Transpose(0, 3, 1, 2)`` becomes ``Transpose -> Conv 1x1``."""
    from onnx import helper, numpy_helper

    if len(graph.input) != 1:
        return False
    image = graph.input[0].name
    constants = _constants(graph)
    for sub in _consumers(graph, image):
        if sub.op_type != "Sub" or sub.input[0] != image or sub.input[1] not in constants:
            continue
        mul = _only_consumer(graph, sub.output[0], "Mul")
        if mul is None or mul.input[0] != sub.output[0] or mul.input[1] not in constants:
            continue
        transpose = _only_consumer(graph, mul.output[0], "Transpose")
        if transpose is None or list(_attribute(transpose, "perm", [])) != [0, 3, 1, 2]:
            continue
        if any(output.name == transpose.output[0] for output in graph.output):
            continue
        mean, scale = constants[sub.input[1]], constants[mul.input[1]]
        if mean.size != 3 or scale.size != 3 or mean.reshape(-1, 3).shape[0] != 1:
            continue
        mean, scale = mean.reshape(3).astype(np.float64), scale.reshape(3).astype(np.float64)
        weight = np.zeros((3, 3, 1, 1), np.float32)
        weight[range(3), range(3), 0, 0] = scale
        bias = (-mean * scale).astype(np.float32)
        normalised, nchw = f"{NORMALISATION_NODE}:0", f"{NORMALISATION_NODE}/nchw:0"
        for node in _consumers(graph, transpose.output[0]):
            node.input[:] = [normalised if name == transpose.output[0] else name for name in node.input]
        graph.initializer.extend([
            numpy_helper.from_array(weight, f"{NORMALISATION_NODE}/weight"),
            numpy_helper.from_array(bias, f"{NORMALISATION_NODE}/bias"),
        ])
        new_transpose = helper.make_node(
            "Transpose", [image], [nchw], name=f"{NORMALISATION_NODE}/nchw", perm=[0, 3, 1, 2])
        conv = helper.make_node(
            "Conv", [nchw, f"{NORMALISATION_NODE}/weight", f"{NORMALISATION_NODE}/bias"], [normalised],
            name=NORMALISATION_NODE, kernel_shape=[1, 1],
        )
        nodes = [new_transpose, conv] + [n for n in graph.node if n not in (sub, mul, transpose)]
        del graph.node[:]
        graph.node.extend(nodes)
        _drop_unused_initializers(graph)
        return True
    return False


def _pad_into_maxpool(graph) -> bool:
    """Zero ``Pad`` of a ``Relu`` output, then ``MaxPool``: the pads move into the ``MaxPool``."""
    from onnx import helper

    constants = _constants(graph)
    producers = {output: node for node in graph.node for output in node.output}
    changed = False
    for pad in list(graph.node):
        if pad.op_type != "Pad" or (_attribute(pad, "mode", b"constant") not in (b"constant", "constant")):
            continue
        source = producers.get(pad.input[0])
        pool = _only_consumer(graph, pad.output[0], "MaxPool")
        if source is None or source.op_type != "Relu" or pool is None or len(pad.input) < 2:
            continue
        if pad.input[1] not in constants or (len(pad.input) > 2 and pad.input[2]
                                             and (pad.input[2] not in constants or constants[pad.input[2]].any())):
            continue
        if len(pad.input) > 3 and pad.input[3]:  # explicit axes: keep it simple
            continue
        pads = constants[pad.input[1]].astype(np.int64)
        rank = len(pads) // 2
        kernel = list(_attribute(pool, "kernel_shape", []))
        if (rank < 3 or pads[:2].any() or pads[rank:rank + 2].any() or len(kernel) != rank - 2
                or _attribute(pool, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")
                or any(_attribute(pool, "pads", [0]))):
            continue
        spatial = [int(v) for v in list(pads[2:rank]) + list(pads[rank + 2:])]
        begins, ends = spatial[:rank - 2], spatial[rank - 2:]
        if any(p < 0 for p in spatial) or any(max(b, e) >= k for b, e, k in zip(begins, ends, kernel)):
            continue  # a window of padding only would give 0 before and -inf after
        pool.input[0] = pad.input[0]
        kept = [a for a in pool.attribute if a.name != "pads"]
        del pool.attribute[:]
        pool.attribute.extend([*kept, helper.make_attribute("pads", spatial)])
        graph.node.remove(pad)
        changed = True
    if changed:
        _drop_unused_initializers(graph)
    return changed


def _drop_unused_initializers(graph) -> None:
    used = {name for node in graph.node for name in node.input}
    keep = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
