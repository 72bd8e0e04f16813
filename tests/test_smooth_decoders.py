"""Smooth boundaries: bilinear enlargement of the logits and the skip-connection decoder (issue 15).

The variants must keep what the paper decoder has: save/load, ONNX export with dynamic height and width
through the parity gate, int8 export, and a classifier that reads the logits before their final
enlargement."""

from __future__ import annotations

import keras
import numpy as np
import onnxruntime as ort
import pytest

from weaksegtf.errors import ConfigError
from weaksegtf.models import WeakSegmenter
from weaksegtf.models.segmentation_head import ScaleResize

CLASSES = ["background", "benign gland", "malignant gland"]
VARIANTS = [("paper", "bilinear"), ("skip", "bilinear"), ("skip", "nearest")]


def test_scale_resize_by_hand():
    x = np.arange(4.0, dtype="float32").reshape(1, 2, 2, 1)
    # half-pixel centres (PyTorch align_corners=False): output pixel i samples input (i + 0.5) / 2 - 0.5
    expected_row0 = [0.0, 0.25, 0.75, 1.0]
    got = np.asarray(ScaleResize(2)(x))[0, :, :, 0]
    np.testing.assert_allclose(got[0], expected_row0, atol=1e-6)
    np.testing.assert_allclose(got[:, 0], [0.0, 0.5, 1.5, 2.0], atol=1e-6)
    nearest = np.asarray(ScaleResize(2, "nearest")(x))[0, :, :, 0]
    np.testing.assert_array_equal(nearest, np.kron(x[0, :, :, 0], np.ones((2, 2))))
    assert ScaleResize(8).compute_output_shape((None, None, 5, 3)) == (None, None, 40, 3)


@pytest.mark.parametrize("decoder, upsampling", VARIANTS)
def test_variant_shapes_and_save_load_round_trip(tmp_path, decoder, upsampling):
    keras.utils.set_random_seed(0)
    model = WeakSegmenter(num_classes=3, class_names=CLASSES, decoder=decoder, upsampling=upsampling)
    x = np.random.default_rng(0).uniform(0, 255, (2, 48, 64, 3)).astype("float32")
    out = model(x)
    assert tuple(out["mask"].shape) == (2, 48, 64, 3) and tuple(out["label"].shape) == (2, 3)
    stride = 4 if decoder == "skip" else 8
    assert tuple(model.segment_low_res(x).shape) == (2, 48 // stride, 64 // stride, 3)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert (loaded.decoder, loaded.upsampling) == (decoder, upsampling)
    np.testing.assert_array_equal(np.asarray(loaded(x)["mask"]), np.asarray(out["mask"]))


def test_bilinear_logits_are_smooth_where_nearest_makes_8_pixel_squares():
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(1).uniform(0, 255, (1, 64, 64, 3)).astype("float32")
    nearest = WeakSegmenter(num_classes=3)
    bilinear = WeakSegmenter(num_classes=3, upsampling="bilinear")
    bilinear.set_weights(nearest.get_weights())  # same weights: only the enlargement differs
    a, b = (np.asarray(m(x)["mask"])[0, ..., 0] for m in (nearest, bilinear))
    # nearest: constant over each 8 x 8 cell; bilinear: changes inside cells
    assert np.all(a[8:16, 8:16] == a[8, 8]) and len(np.unique(a[8:16, 8:24])) == 2
    assert len(np.unique(b[8:16, 8:16])) > 4
    # both agree on the cell centres' average (a bilinear resize preserves the low-resolution values' mean)
    assert abs(a.mean() - b.mean()) < 0.05 * (abs(a).mean() + 1e-6) + 1e-3
    # the classifier reads the same low-resolution logits either way
    np.testing.assert_allclose(np.asarray(nearest(x)["label"]), np.asarray(bilinear(x)["label"]), atol=1e-6)


def test_decoder_options_are_checked():
    with pytest.raises(ConfigError, match="decoder 'fpn' is unknown; expected one of"):
        WeakSegmenter(num_classes=3, decoder="fpn")
    with pytest.raises(ConfigError, match="upsampling 'cubic' is unknown"):
        WeakSegmenter(num_classes=3, upsampling="cubic")
    with pytest.raises(ConfigError, match="are ResNet-18 options"):
        WeakSegmenter(num_classes=3, architecture="unet", decoder="skip")


def test_skip_decoder_trains_with_whole_labelled_images():
    from weaksegtf.training import train_weak_segmenter

    rng = np.random.default_rng(0)
    mx = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    my = rng.integers(0, 3, (4, 32, 32)).astype(np.uint8)
    lx = [rng.integers(0, 256, (40, 48, 3), dtype=np.uint8) for _ in range(3)]
    model, history = train_weak_segmenter(mx, my, lx, np.array([1, 2, 1]), num_classes=3, mode="S+C", epochs=1,
                                          steps_per_epoch=2, batch_size=2, verbose=0, decoder="skip",
                                          upsampling="bilinear")
    assert model.decoder == "skip" and np.isfinite(history.history["cls_loss"][-1])
    # the valid-pixel share of the classifier's pooling is per 4 x 4 cell for the skip decoder
    valid = np.zeros((1, 8, 8), np.float32)
    valid[0, :, :6] = 1.0
    share = np.asarray(model._valid_share(valid))
    assert share.shape == (1, 2, 2) and share[0, 0].tolist() == [1.0, 0.5]


@pytest.mark.slow
@pytest.mark.parametrize("decoder, upsampling", VARIANTS[:2])
def test_smooth_variants_export_with_dynamic_sizes_through_the_parity_gate(tmp_path, decoder, upsampling):
    from weaksegtf.export import export_model

    keras.utils.set_random_seed(3)
    model = WeakSegmenter(num_classes=3, class_names=CLASSES, decoder=decoder, upsampling=upsampling)
    model(np.zeros((1, 32, 32, 3), "float32"))
    model.save(tmp_path / "model.keras")
    report = export_model(tmp_path / "model.keras", tmp_path / "model.onnx", tile_size_px=32,
                          parity_shapes_px=[(32, 32), (48, 80)], parity_batch_sizes=(1, 2))
    assert report.parity.passed and report.parity.max_scaled_diff <= 1e-4
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(2).uniform(0, 255, (1, 64, 112, 3)).astype("float32")  # a size parity did not use
    onnx_logits = session.run(["mask_logits"], {"image": x})[0]
    keras_logits = np.asarray(model(x)["mask"])
    assert onnx_logits.shape == (1, 64, 112, 3)
    assert np.max(np.abs(onnx_logits - keras_logits) / np.maximum(1.0, np.abs(keras_logits))) <= 1e-4


@pytest.mark.slow
def test_skip_decoder_int8_export_passes_the_agreement_gate(tmp_path, glas_dir):
    from weaksegtf.export import export_model

    keras.utils.set_random_seed(3)
    model = WeakSegmenter(num_classes=3, class_names=CLASSES, decoder="skip", upsampling="bilinear")
    model(np.zeros((1, 32, 32, 3), "float32"))
    model.save(tmp_path / "model.keras")
    report = export_model(tmp_path / "model.keras", tmp_path / "model.onnx", int8=True, calibration_dir=glas_dir,
                          tile_size_px=32, calibration_tiles=8, min_int8_agreement=0.8)
    assert (tmp_path / "model.int8.onnx").is_file()
    assert report.int8_parity.passed and report.int8_parity.what == "onnxruntime int8 vs fp32"
