"""Export building blocks on tiny hand-made inputs: parity numbers, metadata props, all-or-nothing outputs."""

import json

import numpy as np
import pytest

from weaksegtf.errors import ConfigError, DataError, ModelFileError
from weaksegtf.export import OnnxMetadata, read_onnx_metadata, weights_sha256
from weaksegtf.export.parity import compare
from weaksegtf.export.sample_tiles import TileSource, check_shapes
from weaksegtf.export.staged_outputs import StagedOutputs

META = OnnxMetadata(
    class_names=("background", "gland"), class_colors=((240, 240, 240), (220, 40, 40)),
    weights_sha256="ab" * 32, weaksegtf_version="0.1.0", architecture="resnet18", mpp=0.5, tile_size_px=256,
    macenko={"stain_matrix": [[0.6, 0.1], [0.7, 0.9], [0.3, 0.2]]},
)


def test_parity_numbers_by_hand():
    # Reference logits for a 1x2x2 image with 2 classes: argmax [[0, 1], [1, 0]].
    reference = np.array([[[[2.0, 0.0], [0.0, 1.0]], [[0.0, 3.0], [1.0, 0.5]]]])
    candidate = reference.copy()
    candidate[0, 1, 1] = [0.4, 0.5]  # that pixel's argmax flips 0 -> 1; largest change |0.4 - 1.0| = 0.6
    report = compare(lambda x: {"mask_logits": candidate}, lambda x: {"mask_logits": reference},
                     [np.zeros((1, 2, 2, 3), "float32")], what="toy", tolerance=0.5)
    assert report.max_abs_diff == pytest.approx(0.6)
    assert report.agreement == 0.75 and report.cases[0].n_pixels == 4
    assert not report.passed
    assert report.max_scaled_diff == pytest.approx(0.6)  # the reference 1.0 scales by max(1, 1.0) = 1
    assert report.failure() == ("toy: max |difference| / max(1, |reference|) 0.6 is above the tolerance 0.5 "
                                "(max |difference| 0.6)")
    assert "FAILED" in report.format()
    relaxed = compare(lambda x: {"mask_logits": candidate}, lambda x: {"mask_logits": reference},
                      [np.zeros((1, 2, 2, 3), "float32")], what="toy", min_agreement=0.75)
    assert relaxed.passed and json.dumps(relaxed.to_dict())


def test_parity_tolerance_scales_with_large_logits():
    # float32 keeps ~7 digits: a logit of 300 differing by 2e-4 is at the float limit, one of 0.5 is not.
    reference = np.array([[[[300.0, 0.5]]]])
    candidate = reference + np.array([[[[2e-4, 0.0]]]])
    report = compare(lambda x: {"mask_logits": candidate}, lambda x: {"mask_logits": reference},
                     [np.zeros((1, 1, 1, 3), "float32")], what="big", tolerance=1e-4)
    assert report.max_abs_diff == pytest.approx(2e-4) and report.max_scaled_diff == pytest.approx(2e-4 / 300)
    assert report.passed
    small = compare(lambda x: {"mask_logits": reference + np.array([[[[0.0, 2e-4]]]])},
                    lambda x: {"mask_logits": reference}, [np.zeros((1, 1, 1, 3), "float32")], what="small",
                    tolerance=1e-4)
    assert small.max_scaled_diff == pytest.approx(2e-4) and not small.passed


def test_parity_treats_nan_and_shape_mismatch_as_failures():
    ones = np.ones((1, 2, 2, 2), "float32")
    nan = compare(lambda x: {"mask_logits": ones * np.nan}, lambda x: {"mask_logits": ones}, [ones[..., :1]],
                  what="nan", tolerance=1.0)
    assert nan.max_abs_diff == np.inf and not nan.passed
    wrong = compare(lambda x: {"mask_logits": ones[:, :1]}, lambda x: {"mask_logits": ones}, [ones[..., :1]],
                    what="shape", tolerance=1.0)
    assert wrong.max_abs_diff == np.inf and wrong.agreement == 0.0
    assert nan.max_scaled_diff == np.inf and wrong.max_scaled_diff == np.inf and not wrong.passed


def test_metadata_props_are_strings_and_round_trip():
    props = META.to_props()
    assert all(isinstance(v, str) for v in props.values())
    assert json.loads(props["class_names"]) == ["background", "gland"]
    assert json.loads(props["input"])["value_range"] == [0, 255]
    assert OnnxMetadata.from_props(props) == META


def test_metadata_from_foreign_props_names_what_is_missing():
    with pytest.raises(ModelFileError, match="x.onnx has no weaksegtf metadata .*class_names"):
        OnnxMetadata.from_props({"producer": "someone"}, "x.onnx")
    props = META.to_props() | {"class_colors": "[[1, 2, 3]]"}
    with pytest.raises(ModelFileError, match="1 colours for 2 classes"):
        OnnxMetadata.from_props(props, "x.onnx")


def test_read_onnx_metadata_refuses_an_onnx_file_from_elsewhere(tmp_path):
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    path = tmp_path / "relu.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString())
    with pytest.raises(ModelFileError, match="relu.onnx has no weaksegtf metadata"):
        read_onnx_metadata(path)
    (tmp_path / "junk.onnx").write_text("junk")
    with pytest.raises(ModelFileError, match="cannot open .*junk.onnx as an ONNX model"):
        read_onnx_metadata(tmp_path / "junk.onnx")


def test_weights_hash_depends_on_values_shapes_and_order():
    a, b = np.zeros((2, 3), "float32"), np.ones(4, "float32")
    assert weights_sha256([a, b]) == weights_sha256([a.copy(), b.copy()])
    assert weights_sha256([a, b]) != weights_sha256([b, a])
    assert weights_sha256([a]) != weights_sha256([a.reshape(3, 2)])


def test_staged_outputs_commit_all_or_nothing(tmp_path):
    (tmp_path / "keep.onnx").write_text("old")
    with pytest.raises(RuntimeError):
        with StagedOutputs() as staged:
            staged.file(tmp_path / "keep.onnx").write_text("new")
            staged.directory(tmp_path / "sm").mkdir()
            staged.directory(tmp_path / "models" / "weakseg" / "1").mkdir()
            raise RuntimeError("parity failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.onnx"]
    assert (tmp_path / "keep.onnx").read_text() == "old"

    # An existing folder is merged into, never replaced: entries of the same name are
    # replaced, anything else it holds (the user's files) stays byte for byte (issue 14, item 1).
    (tmp_path / "sm").mkdir()
    (tmp_path / "sm" / "user.keras").write_text("the user's model")
    (tmp_path / "sm" / "saved_model.pb").write_text("old version")
    with StagedOutputs() as staged:
        staged.file(tmp_path / "keep.onnx").write_text("new")
        folder = staged.directory(tmp_path / "sm")
        folder.mkdir()
        (folder / "saved_model.pb").write_text("new version")
        assert staged.entries(tmp_path / "sm") == ["saved_model.pb"]
        staged.commit()
    assert (tmp_path / "keep.onnx").read_text() == "new"
    assert sorted(p.name for p in (tmp_path / "sm").iterdir()) == ["saved_model.pb", "user.keras"]
    assert (tmp_path / "sm" / "saved_model.pb").read_text() == "new version"
    assert (tmp_path / "sm" / "user.keras").read_text() == "the user's model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.onnx", "sm"]


def test_tile_source_crops_pads_and_is_deterministic(tmp_path):
    from weaksegtf.data import write_png

    image = np.arange(20 * 30 * 3, dtype=np.uint8).reshape(20, 30, 3)
    (tmp_path / "images").mkdir()
    write_png(tmp_path / "images" / "a.png", image)
    batch = TileSource(tmp_path, seed=3).batch(2, 16, 16)
    assert batch.shape == (2, 16, 16, 3) and batch.dtype == np.float32
    np.testing.assert_array_equal(batch, TileSource(tmp_path, seed=3).batch(2, 16, 16))
    padded = TileSource(tmp_path, seed=0).batch(1, 32, 32)[0]
    np.testing.assert_array_equal(padded[:20, :30], image)  # only one crop fits: the whole image
    assert (padded[20:] == 255).all() and (padded[:, 30:] == 255).all()
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="sample folder .*empty holds no images"):
        TileSource(tmp_path / "empty")
    with pytest.raises(ConfigError, match="multiples of 16"):
        check_shapes([(32, 40)])
