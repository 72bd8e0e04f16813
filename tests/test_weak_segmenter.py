"""The Ciga & Martel model: shapes, wiring, alternating training, save/load."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from weaksegtf.errors import ConfigError
from weaksegtf.models import WeakSegmenter

RNG = np.random.default_rng(0)


def _batch(n, size=32, num_classes=3):
    images = RNG.uniform(0, 255, (n, size, size, 3)).astype("float32")
    masks = RNG.integers(0, num_classes, (n, size, size)).astype("int32")
    labels = RNG.integers(0, num_classes, (n,)).astype("int32")
    return images, masks, labels


def _snapshot(variables):
    return [np.array(v) for v in variables]


def _changed(before, variables):
    return [not np.array_equal(b, np.array(v)) for b, v in zip(before, variables)]


@pytest.fixture()
def model():
    keras.utils.set_random_seed(1)
    m = WeakSegmenter(num_classes=3, class_names=["background", "benign", "malignant"])
    m.compile(optimizer=keras.optimizers.Adam(1e-3))
    return m


def test_output_shapes_and_parameter_counts(model):
    out = model(np.zeros((2, 64, 96, 3), "float32"))
    assert tuple(out["mask"].shape) == (2, 64, 96, 3)
    assert tuple(out["label"].shape) == (2, 3)
    counts = {
        "encoder": model.encoder.count_params(),
        "segmentation_head": model.segmentation_head.count_params(),
        "classifier_head": model.classifier_head.count_params(),
        "total": model.count_params(),
    }
    print(counts)
    # Table A.2: 3x3x256x64 conv + BN(64) x4 + 1x1 64->3 conv with bias.
    assert counts["segmentation_head"] == 3 * 3 * 256 * 64 + 4 * 64 + 64 * 3 + 3 == 147_907
    # Table A.3: 3->8 conv, BN(8) x4, 8->3 conv, no biases.
    assert counts["classifier_head"] == 3 * 8 + 4 * 8 + 8 * 3 == 80
    assert counts["encoder"] == 2_787_264
    # The baked-in ImageNet normalisation holds constants, not weights.
    assert counts["total"] == 2_787_264 + 147_907 + 80


def test_unknown_input_sizes_are_served_by_one_model(model):
    for height, width in [(32, 32), (48, 80), (128, 16)]:
        assert tuple(model(np.zeros((1, height, width, 3), "float32"))["mask"].shape) == (1, height, width, 3)


def test_classifier_reads_pre_interpolation_logits(model):
    assert model.classifier_head.input is model.segmentation_head.output
    x = np.zeros((1, 64, 64, 3), "float32")
    assert tuple(model.segment_low_res(x).shape) == (1, 8, 8, 3)  # 1/8 of the input, as in Table A.3 (16 of 128)
    np.testing.assert_allclose(
        np.asarray(model.classifier_head(model.segment_low_res(x))), np.asarray(model(x)["label"]), atol=1e-6
    )
    # The mask output is the nearest interpolation of exactly those logits.
    low = np.asarray(model.segment_low_res(x))
    np.testing.assert_allclose(np.asarray(model(x)["mask"]), low.repeat(8, 1).repeat(8, 2), atol=1e-6)


def test_s_plus_c_step_updates_encoder_and_classifier(model):
    images, masks, labels = _batch(4)
    encoder_before = _snapshot(model.encoder.trainable_variables)
    classifier_before = _snapshot(model.classifier_head.variables)
    logs = model.train_on_batch({"mask": (images, masks), "label": (images, labels)}, return_dict=True)
    assert {"loss", "seg_loss", "seg_accuracy", "cls_loss", "cls_accuracy"} <= set(logs)
    assert all(_changed(encoder_before, model.encoder.trainable_variables))
    assert all(_changed(classifier_before, model.classifier_head.variables))
    assert logs["loss"] == pytest.approx(logs["seg_loss"] + logs["cls_loss"], rel=1e-5)


def test_s_step_leaves_classifier_untouched(model):
    images, masks, _ = _batch(4)
    encoder_before = _snapshot(model.encoder.trainable_variables)
    classifier_before = _snapshot(model.classifier_head.variables)  # includes BN moving statistics
    for _ in range(2):
        logs = model.train_on_batch({"mask": (images, masks)}, return_dict=True)
    assert "cls_loss" not in logs
    assert all(_changed(encoder_before, model.encoder.trainable_variables))
    assert not any(_changed(classifier_before, model.classifier_head.variables))


def test_plain_tuple_means_masks_only(model):
    images, masks, _ = _batch(2)
    classifier_before = _snapshot(model.classifier_head.variables)
    model.fit(images, masks, batch_size=2, epochs=1, verbose=0)
    assert not any(_changed(classifier_before, model.classifier_head.variables))


def test_sequential_update_applies_two_optimizer_steps():
    keras.utils.set_random_seed(1)
    m = WeakSegmenter(num_classes=3, update="sequential")
    m.compile(optimizer=keras.optimizers.Adam(1e-3))
    images, masks, labels = _batch(2)
    classifier_before = _snapshot(m.classifier_head.trainable_variables)
    m.train_on_batch({"mask": (images, masks), "label": (images, labels)})
    assert int(m.optimizer.iterations) == 2
    assert all(_changed(classifier_before, m.classifier_head.trainable_variables))


def test_fit_reports_per_phase_trackers_in_history(model):
    images, masks, labels = _batch(4)
    ds = tf.data.Dataset.zip(
        {
            "mask": tf.data.Dataset.from_tensor_slices((images, masks)).batch(2).repeat(),
            "label": tf.data.Dataset.from_tensor_slices((images, labels)).batch(2).repeat(),
        }
    )
    history = model.fit(ds, steps_per_epoch=2, epochs=2, validation_data=(images, masks), verbose=0)
    expected = {"loss", "seg_loss", "seg_accuracy", "cls_loss", "cls_accuracy", "val_loss", "val_pixel_accuracy",
                "val_mean_iou", "val_dice_background", "val_dice_benign", "val_dice_malignant"}
    assert expected <= set(history.history)
    assert all(len(v) == 2 for v in history.history.values())


def test_save_and_load_are_bit_exact(model, tmp_path):
    images, masks, labels = _batch(2)
    model.train_on_batch({"mask": (images, masks), "label": (images, labels)})
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, WeakSegmenter)
    assert loaded.get_config() == model.get_config()
    for key in ("mask", "label"):
        np.testing.assert_array_equal(np.asarray(loaded(images)[key]), np.asarray(model(images)[key]))


def test_class_weights_are_kept_in_the_config(tmp_path):
    m = WeakSegmenter(num_classes=2, class_names=["bg", "fg"], class_weights=[0.5, 2.0])
    m.save(tmp_path / "m.keras")
    assert keras.saving.load_model(tmp_path / "m.keras").class_weights == [0.5, 2.0]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_classes": 3, "class_names": ["a", "b"]}, r"got 2 class names \['a', 'b'\] for 3 classes"),
        ({"num_classes": 1}, "num_classes must be at least 2, got 1"),
        ({"num_classes": 3, "update": "both"}, "update 'both' is unknown"),
        ({"num_classes": 3, "architecture": "vgg"}, "architecture 'vgg' is unknown"),
        ({"num_classes": 3, "class_weights": [1.0]}, "got 1 class weights for 3 classes"),
    ],
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        WeakSegmenter(**kwargs)
