"""weakseg-export on a tiny ResNet-18 segmenter: ONNX and SavedModel parity, metadata, int8, failures, CLI."""

import functools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import onnxruntime as ort
import pytest
import tensorflow as tf

from weaksegtf.cli import export as export_cli
from weaksegtf.errors import ModelFileError, ParityError
from weaksegtf.export import export_model, read_onnx_metadata, weights_sha256
from weaksegtf.export.sample_tiles import TileSource
from weaksegtf.models import WeakSegmenter

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["background", "benign gland", "malignant gland"]
MACENKO = {"type": "MacenkoNormalizer", "stain_matrix": [[0.65, 0.07], [0.70, 0.99], [0.29, 0.11]],
           "max_concentrations": [1.9, 1.0]}
SHAPES = [(32, 32), (48, 64)]
ALL_OUTPUTS = ("mask_logits", "label_logits", "mask_probabilities")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    keras.utils.set_random_seed(4)
    model = WeakSegmenter(num_classes=3, class_names=CLASSES)
    model(np.zeros((1, 32, 32, 3), "float32"))
    path = tmp_path_factory.mktemp("model") / "model.keras"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def keras_model(model_path):
    return keras.saving.load_model(model_path, compile=False)


@pytest.fixture(scope="module")
def exported(model_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    report = export_model(
        model_path, out / "model.onnx", out / "serving" / "1", outputs=ALL_OUTPUTS,
        mpp=1.24, tile_size_px=32, macenko=MACENKO, parity_shapes_px=SHAPES, parity_batch_sizes=(1, 3),
    )
    return report


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _shift_mask_logits(proto, by=1e-3):
    """Add ``by`` to the mask logits inside the ONNX graph: a mismatch only parity can see."""
    from onnx import helper, numpy_helper

    for node in proto.graph.node:
        node.output[:] = ["unshifted" if name == "mask_logits" else name for name in node.output]
        node.input[:] = ["unshifted" if name == "mask_logits" else name for name in node.input]
    proto.graph.initializer.append(numpy_helper.from_array(np.array(by, np.float32), "shift"))
    proto.graph.node.append(helper.make_node("Add", ["unshifted", "shift"], ["mask_logits"]))


# --- the successful export ---------------------------------------------------

@pytest.mark.slow
def test_onnx_matches_keras_at_two_sizes_and_two_batch_sizes(exported, keras_model):
    report = exported.parity
    assert {(c.batch_size, c.height_px, c.width_px) for c in report.cases} == {
        (1, 32, 32), (3, 32, 32), (1, 48, 64), (3, 48, 64)}
    assert report.passed and report.max_abs_diff <= 1e-4
    assert set(report.cases[0].max_abs_diff) == set(ALL_OUTPUTS)

    # Independently of the report: a fresh session, a shape the check did not use.
    session = ort.InferenceSession(str(exported.onnx_path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert not any(isinstance(d, int) for d in session.get_inputs()[0].shape[:3])  # dynamic B, H, W
    assert sorted(o.name for o in session.get_outputs()) == sorted(ALL_OUTPUTS)
    x = np.random.default_rng(1).uniform(0, 255, (2, 64, 80, 3)).astype("float32")
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"image": x})))
    want = keras_model(x, training=False)
    assert got["mask_logits"].shape == (2, 64, 80, 3) and got["label_logits"].shape == (2, 3)
    np.testing.assert_allclose(got["mask_logits"], want["mask"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(got["label_logits"], want["label"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(got["mask_probabilities"], tf.nn.softmax(want["mask"]), atol=1e-5, rtol=0)


@pytest.mark.slow
def test_export_simplifies_the_tf2onnx_graph(exported):
    import onnx

    from weaksegtf.export.graph_rewrite import NORMALISATION_NODE

    nodes = onnx.load(str(exported.onnx_path)).graph.node
    ops = [node.op_type for node in nodes]
    # Normalisation is a 1x1 convolution after the layout transpose; the stem's zero Pad is in the MaxPool.
    assert ops[:2] == ["Transpose", "Conv"] and nodes[1].name == NORMALISATION_NODE
    assert "Pad" not in ops and "Sub" not in ops


def test_metadata_round_trip(exported, keras_model):
    meta = read_onnx_metadata(exported.onnx_path)
    assert meta == exported.metadata
    assert meta.class_names == tuple(CLASSES) and len(meta.class_colors) == 3
    assert meta.mpp == 1.24 and meta.tile_size_px == 32 and meta.macenko == MACENKO
    assert meta.normalization["in_graph"] is True
    np.testing.assert_allclose(meta.normalization["mean"], [123.675, 116.28, 103.53], atol=1e-4)
    assert meta.input == {"name": "image", "dtype": "float32", "layout": "NHWC", "channels": "RGB",
                          "value_range": [0, 255], "size_multiple_px": 16}
    assert meta.outputs == ALL_OUTPUTS and meta.quantization == "none" and meta.architecture == "resnet18"
    assert meta.weights_sha256 == weights_sha256(np.asarray(w) for w in keras_model.weights)
    import weaksegtf

    assert meta.weaksegtf_version == weaksegtf.__version__


@pytest.mark.slow
def test_metadata_reader_needs_no_tensorflow(exported):
    code = ("import sys; from weaksegtf.export import read_onnx_metadata;"
            f"meta = read_onnx_metadata({str(exported.onnx_path)!r});"
            "assert meta.class_names[2] == 'malignant gland', meta;"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules and 'onnx' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow
def test_savedmodel_signature_matches_keras(exported, keras_model):
    assert exported.savedmodel_parity.passed
    signature = tf.saved_model.load(str(exported.savedmodel_dir)).signatures["serving_default"]
    spec = signature.structured_input_signature[1]["image"]
    assert spec.dtype == tf.uint8 and spec.shape.as_list() == [None, None, None, 3]
    assert set(signature.structured_outputs) == {"probabilities", "mask", "label_probabilities"}

    images = np.random.default_rng(2).integers(0, 256, (2, 48, 32, 3), dtype=np.uint8)
    out = signature(image=tf.constant(images))
    want = keras_model(images.astype("float32"), training=False)
    probabilities = tf.nn.softmax(want["mask"]).numpy()
    np.testing.assert_allclose(out["probabilities"], probabilities, atol=1e-5, rtol=0)
    assert out["mask"].dtype == tf.uint8
    np.testing.assert_array_equal(out["mask"], np.argmax(probabilities, -1))
    np.testing.assert_allclose(out["label_probabilities"], tf.nn.softmax(want["label"]), atol=1e-5, rtol=0)
    with pytest.raises(tf.errors.InvalidArgumentError, match="multiple of 16"):
        signature(image=tf.constant(images[:, :40]))


@pytest.mark.slow
def test_example_request_runs_through_the_serving_signature(exported):
    body = json.loads((REPO / "export" / "request.json").read_text())
    assert body["signature_name"] == "serving_default"
    image = np.asarray(body["inputs"]["image"], np.uint8)
    assert image.shape == (1, 16, 16, 3)
    signature = tf.saved_model.load(str(exported.savedmodel_dir)).signatures["serving_default"]
    out = signature(image=tf.constant(image))
    assert out["probabilities"].shape == (1, 16, 16, 3) and out["mask"].shape == (1, 16, 16)
    config = (REPO / "export" / "models.config").read_text()
    assert 'name: "weakseg"' in config and 'base_path: "/models/weakseg"' in config


@pytest.mark.slow
def test_rest_client_round_trip_against_a_stand_in_server(exported, tmp_path):
    """export/client.py against a local server that answers like TF Serving's columnar REST API."""
    import importlib.util
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    spec = importlib.util.spec_from_file_location("client", REPO / "export" / "client.py")
    client = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(client)
    signature = tf.saved_model.load(str(exported.savedmodel_dir)).signatures["serving_default"]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            out = signature(image=tf.constant(np.asarray(body["inputs"]["image"], np.uint8)))
            reply = json.dumps({"outputs": {k: v.numpy().tolist() for k, v in out.items()}}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        image = np.random.default_rng(3).integers(0, 256, (32, 48, 3), dtype=np.uint8)
        result = client.predict(image, f"http://127.0.0.1:{server.server_port}/v1/models/weakseg:predict")
    finally:
        server.shutdown()
    assert result["probabilities"].shape == (32, 48, 3) and result["mask"].shape == (32, 48)
    np.testing.assert_array_equal(result["mask"], result["probabilities"].argmax(-1))


# --- int8 --------------------------------------------------------------------

@pytest.mark.slow
def test_cli_int8_export_agrees_with_fp32_on_real_glas_tiles(model_path, glas_dir, tmp_path, capsys):
    out = tmp_path / "model.onnx"
    code = export_cli.main([str(model_path), "--onnx", str(out), "--int8", "--calibration", str(glas_dir),
                            "--samples", str(glas_dir), "--tile-size", "32", "--mpp", "1.24",
                            "--min-int8-agreement", "0.8", "--int8-reduce-range", "on"])
    assert code == 0, capsys.readouterr().err
    assert "onnxruntime int8 vs fp32 (real tiles from" in capsys.readouterr().out
    assert _files(tmp_path) == ["model.int8.onnx", "model.onnx"]
    meta = read_onnx_metadata(tmp_path / "model.int8.onnx")
    assert meta.quantization.startswith("int8 static QDQ") and meta.quantization.endswith("with reduce_range")
    assert meta.mpp == 1.24
    ops = {}
    import onnx

    from weaksegtf.export.graph_rewrite import NORMALISATION_NODE

    graph = onnx.load(str(tmp_path / "model.int8.onnx")).graph
    for node in graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    assert ops.get("QuantizeLinear", 0) > 0 and ops.get("DequantizeLinear", 0) > 0
    # The input normalisation reads the raw float image: nothing quantises in front of it.
    normalise = next(node for node in graph.node if node.name == NORMALISATION_NODE)
    producers = {output: node.op_type for node in graph.node for output in node.output}
    assert [producers.get(name) for name in normalise.input[:2]] == ["Transpose", None]

    # Agreement measured here, on GlaS crops the export did not use. A random
    # model's logits are nearly tied, so int8 flips some pixels: 0.8, not 0.99.
    tiles = TileSource(glas_dir, seed=11).batch(8, 64, 64)
    fp32, int8 = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
                  for p in (out, tmp_path / "model.int8.onnx"))
    a, b = (s.run(["mask_logits"], {"image": tiles})[0] for s in (fp32, int8))
    assert np.mean(a.argmax(-1) == b.argmax(-1)) >= 0.8


@pytest.mark.slow
def test_int8_below_the_agreement_threshold_writes_nothing(model_path, glas_dir, tmp_path):
    with pytest.raises(ParityError, match="argmax agreement .* is below the required 100.00%") as error:
        export_model(model_path, tmp_path / "model.onnx", int8=True, calibration_dir=glas_dir, tile_size_px=32,
                     calibration_tiles=8, min_int8_agreement=1.0)
    assert error.value.report.what == "onnxruntime int8 vs fp32"
    assert _files(tmp_path) == []  # neither the int8 model nor the (valid) fp32 one


# --- forced parity failure ---------------------------------------------------

@pytest.mark.slow
def test_forced_parity_failure_exits_non_zero_and_leaves_no_file(model_path, exported, tmp_path, monkeypatch, capsys):
    from weaksegtf.export import exporter

    perturbed = functools.partial(exporter.export_model, _perturb=_shift_mask_logits)
    monkeypatch.setattr(exporter, "export_model", perturbed)
    # A previous export of the same weights: the only file an export may replace without --overwrite.
    previous = exported.onnx_path.read_bytes()
    (tmp_path / "model.onnx").write_bytes(previous)
    code = export_cli.main([str(model_path), "--onnx", str(tmp_path / "model.onnx"),
                            "--savedmodel", str(tmp_path / "serving"), "--tile-size", "32"])
    err = capsys.readouterr().err
    assert code == export_cli.CHECK_FAILED == 1
    assert "onnxruntime fp32 vs Keras: max |difference| / max(1, |reference|) " in err
    assert "is above the tolerance 0.0001 (max |difference| 0.001)" in err
    assert "onnxruntime fp32 vs Keras (random pixels)" in err and "FAILED" in err
    assert _files(tmp_path) == ["model.onnx"]  # no SavedModel, no partial file
    assert (tmp_path / "model.onnx").read_bytes() == previous  # the old file is untouched


# --- bad input: fast, nothing converted ---------------------------------------

def test_cli_refuses_a_file_that_is_not_a_weaksegtf_model(tmp_path, capsys):
    text = tmp_path / "notes.keras"
    text.write_text("not a model")
    assert export_cli.main([str(text), "--onnx", str(tmp_path / "a.onnx")]) == 2
    assert f"{text} is not a Keras 3 .keras archive" in capsys.readouterr().err

    plain = tmp_path / "plain.keras"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(plain)
    assert export_cli.main([str(plain), "--onnx", str(tmp_path / "b.onnx")]) == 2
    err = capsys.readouterr().err
    assert f"{plain} holds a Keras 'Sequential'" in err and "expected a weaksegtf model" in err
    assert export_cli.main([str(tmp_path / "missing.keras"), "--onnx", str(tmp_path / "c.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert _files(tmp_path) == ["notes.keras", "plain.keras"]


def test_cli_refuses_a_missing_calibration_folder(model_path, tmp_path, capsys):
    missing = tmp_path / "no-such-tiles"
    code = export_cli.main([str(model_path), "--onnx", str(tmp_path / "m.onnx"), "--int8", "--calibration", str(missing)])
    assert code == 2
    assert f"calibration folder {missing} does not exist" in capsys.readouterr().err
    assert export_cli.main([str(model_path), "--onnx", str(tmp_path / "m.onnx"), "--int8"]) == 2
    assert "needs calibration_dir (--calibration DIR)" in capsys.readouterr().err
    assert export_cli.main([str(model_path), "--onnx", str(tmp_path / "m.onnx"), "--calibration", str(tmp_path)]) == 2
    assert "--calibration is only used with --int8" in capsys.readouterr().err
    assert _files(tmp_path) == []


@pytest.mark.parametrize("opset, message", [(5, "opset 5 cannot be exported and run: onnxruntime"),
                                            (99, "opset 99 cannot be exported and run")])
def test_cli_refuses_an_opset_onnxruntime_cannot_run(model_path, tmp_path, capsys, opset, message):
    assert export_cli.main([str(model_path), "--onnx", str(tmp_path / "m.onnx"), "--opset", str(opset)]) == 2
    err = capsys.readouterr().err
    assert message in err and re.search(r"opsets 7 to 1[89]|opsets 7 to 2\d", err)
    assert _files(tmp_path) == []


def test_library_errors_name_the_file(tmp_path):
    with pytest.raises(ModelFileError, match="model file .*missing.keras does not exist"):
        export_model(tmp_path / "missing.keras", tmp_path / "m.onnx")


def test_help_is_instant_and_imports_no_tensorflow():
    code = ("import sys, weaksegtf.cli.export, weaksegtf.export;"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    with pytest.raises(SystemExit) as exit_info:
        export_cli.main(["--help"])
    assert exit_info.value.code == 0
