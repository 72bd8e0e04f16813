"""The Bokhorst U-Net: structure, wiring into WeakSegmenter, S+C training, save/load, ONNX, CLI."""

import json

import keras
import numpy as np
import pytest

from weaksegtf.cli import train as train_cli
from weaksegtf.data import LabelSet, MaskSet
from weaksegtf.data.joint_distribution_table import JointDistributionTable
from weaksegtf.errors import ConfigError
from weaksegtf.models import UNetBackbone, WeakSegmenter
from weaksegtf.training import train_weak_segmenter

RNG = np.random.default_rng(0)
CLASSES = ["background", "gland"]
TABLE = JointDistributionTable([[0.9, 0.1], [0.4, 0.6]], [[0.05, 0.05], [0.1, 0.1]], ("low", "high"), tuple(CLASSES))


def _snapshot(variables):
    return [np.array(v) for v in variables]


def _changed(before, variables):
    return [not np.array_equal(b, np.array(v)) for b, v in zip(before, variables)]


def test_backbone_has_five_levels_concatenating_blocks_and_no_transposed_convolutions():
    backbone = UNetBackbone(filters=4)
    layers = {layer.name: layer for layer in backbone.layers}
    kinds = [type(layer).__name__ for layer in backbone.layers]
    assert kinds.count("MaxPooling2D") == 4  # five levels
    assert kinds.count("UpSampling2D") == 4 and "Conv2DTranspose" not in kinds
    assert all(layers[f"up{i}.upsample"].interpolation == "nearest" for i in range(4))
    # Filters double after every pool: 4, 8, 16, 32, 64.
    assert [layers[f"down{i}.0.conv"].filters for i in range(5)] == [4, 8, 16, 32, 64]
    # The expanding path convolves right after upsampling, then joins the skip.
    assert layers["up3.up.conv"].filters == 32
    # Each block's output is its input concatenated with its last feature map.
    block_input, last_map = layers["down1.concat"].input
    assert block_input is layers["down0.pool"].output
    assert last_map is layers["down1.1.relu"].output
    out = backbone(np.zeros((2, 48, 80, 3), "float32"))
    # up0 block: skip (3 + 4) + upsampled conv 4 + block conv 4 channels.
    assert tuple(out.shape) == (2, 48, 80, 15) == (2, 48, 80, backbone.output_channels)
    assert backbone.stride == 16


def test_unet_segmenter_gives_full_resolution_logits_that_the_classifier_reads():
    model = WeakSegmenter(num_classes=2, architecture="unet", unet_filters=4)
    for height, width in [(32, 32), (48, 80)]:
        out = model(np.zeros((1, height, width, 3), "float32"))
        assert tuple(out["mask"].shape) == (1, height, width, 2) and tuple(out["label"].shape) == (1, 2)
    assert model.classifier_head.input is model.segmentation_head.output
    x = RNG.uniform(0, 255, (2, 32, 48, 3)).astype("float32")
    low = np.asarray(model.segment_low_res(x))
    assert low.shape == (2, 32, 48, 2)  # the U-Net's "low-res" logits are full resolution
    np.testing.assert_allclose(np.asarray(model(x)["mask"]), low, atol=1e-6)  # identity interpolation
    np.testing.assert_allclose(
        np.asarray(model(x)["label"]), np.asarray(model.classifier_head(model.segment_low_res(x))), atol=1e-6
    )


@pytest.mark.slow
def test_unet_s_plus_c_and_lowres_step_trains_and_save_load_is_bit_exact(tmp_path):
    keras.utils.set_random_seed(2)
    model = WeakSegmenter(
        num_classes=2, class_names=CLASSES, architecture="unet", unet_filters=4,
        segmentation_loss="minibatch_balanced", joint_table=TABLE, lowres_group_size=2,
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    images = RNG.uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    masks = RNG.integers(0, 2, (2, 32, 32)).astype("int32")
    masks[:, :, :20] = 255  # sparse
    labels = np.array([0, 1], "int32")
    block_labels = np.array([[[0, 1], [1, 255]], [[0, 0], [1, 1]]], "int32")
    encoder_before = _snapshot(model.encoder.trainable_variables)
    classifier_before = _snapshot(model.classifier_head.variables)
    logs = model.train_on_batch(
        {"mask": (images, masks), "label": (images, labels), "lowres": (images, block_labels)}, return_dict=True
    )
    assert {"loss", "seg_loss", "seg_accuracy", "cls_loss", "cls_accuracy", "lowres_loss"} <= set(logs)
    assert logs["loss"] == pytest.approx(logs["seg_loss"] + logs["cls_loss"] + logs["lowres_loss"], rel=1e-5)
    assert all(_changed(encoder_before, model.encoder.trainable_variables))
    assert all(_changed(classifier_before, model.classifier_head.variables))

    path = tmp_path / "unet.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, WeakSegmenter) and isinstance(loaded.encoder, UNetBackbone)
    assert loaded.get_config() == model.get_config()
    assert loaded.joint_table == TABLE.to_dict() and loaded.segmentation_loss == "minibatch_balanced"
    for key in ("mask", "label"):
        np.testing.assert_array_equal(np.asarray(loaded(images)[key]), np.asarray(model(images)[key]))


@pytest.mark.slow
def test_unet_exports_to_onnx_and_matches_keras(tmp_path):
    import onnxruntime as ort

    from weaksegtf.export import export_model

    keras.utils.set_random_seed(3)
    model = WeakSegmenter(num_classes=2, class_names=CLASSES, architecture="unet", unet_filters=4)
    model.save(tmp_path / "unet.keras")
    report = export_model(
        tmp_path / "unet.keras", tmp_path / "unet.onnx", tile_size_px=32,
        parity_shapes_px=[(32, 32), (48, 64)], parity_batch_sizes=(1, 2),
    )
    assert report.parity.passed and report.parity.max_abs_diff < 1e-4
    # Unknown sizes: a shape the export never saw still matches.
    session = ort.InferenceSession(str(tmp_path / "unet.onnx"), providers=["CPUExecutionProvider"])
    x = RNG.uniform(0, 255, (1, 80, 96, 3)).astype("float32")
    onnx_mask = session.run(["mask_logits"], {"image": x})[0]
    np.testing.assert_allclose(onnx_mask, np.asarray(model(x)["mask"]), atol=1e-4)


@pytest.mark.slow
def test_train_cli_unet_with_sparse_masks_and_a_lowres_stream(tmp_path):
    rng = np.random.default_rng(5)
    images = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(4)]
    masks = [rng.integers(0, 2, (32, 32)).astype(np.uint8) for _ in range(4)]
    for mask in masks:
        mask[8:24] = 255
    MaskSet(images, masks, [f"m{i}" for i in range(4)]).write(tmp_path / "masks")
    LabelSet(images, [0, 1, 1, 0], [f"l{i}" for i in range(4)]).write(tmp_path / "lowres")
    TABLE.save(tmp_path / "table.json")
    out = tmp_path / "run"
    code = train_cli.main([
        "--masks", str(tmp_path / "masks"), "--lowres", str(tmp_path / "lowres"),
        "--joint-table", str(tmp_path / "table.json"), "--mode", "S", "--out", str(out),
        "--classes", ",".join(CLASSES), "--architecture", "unet", "--unet-filters", "4",
        "--loss", "instance_balanced", "--lowres-loss", "inter", "--group-size", "2",
        "--tile-size", "32", "--epochs", "1", "--batch-size", "2",
    ])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["architecture"] == "unet" and metrics["segmentation_loss"] == "instance_balanced"
    assert metrics["lowres_loss"] == "inter" and metrics["n_lowres_images"] == 4
    assert metrics["class_weights"] is None  # "auto" means none for the balanced losses
    header = (out / "history.csv").read_text().splitlines()[0].split(",")
    assert {"seg_loss", "lowres_loss"} <= set(header)
    model = keras.saving.load_model(out / "model.keras")
    assert model.architecture == "unet" and model.lowres_loss == "inter" and model.lowres_group_size == 2


def test_resnet_weights_cannot_be_loaded_into_the_unet():
    images = np.zeros((2, 32, 32, 3), np.uint8)
    masks = np.zeros((2, 32, 32), np.uint8)
    with pytest.raises(ConfigError, match="encoder_weights are ResNet-18 weights; architecture 'unet'"):
        train_weak_segmenter(images, masks, None, None, num_classes=2, mode="S", architecture="unet",
                             encoder_weights="resnet18.pth")
