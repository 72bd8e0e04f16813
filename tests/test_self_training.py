"""Self-training on image-labelled images (label-constrained pseudo-masks) and the light augmentation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from weaksegtf.errors import ConfigError
from weaksegtf.pseudo_labels import allowed_class_pseudo_mask, pseudo_mask_set

CLASSES = ["background", "benign gland", "malignant gland"]


def test_pseudo_mask_takes_where_from_the_model_and_which_class_from_the_label():
    probabilities = np.array([[
        [0.95, 0.03, 0.02],  # sure background
        [0.05, 0.10, 0.85],  # sure gland, the model says malignant
        [0.50, 0.30, 0.20],  # unsure
        [0.08, 0.90, 0.02],  # sure gland, benign
    ]])
    assert allowed_class_pseudo_mask(probabilities, 1, 0.9).tolist() == [[0, 1, 255, 1]]
    assert allowed_class_pseudo_mask(probabilities, 2, 0.9).tolist() == [[0, 2, 255, 2]]
    # confidence 0.92: 1 - p_0 = 0.92 for the last pixel is kept, 0.95 for the second, 0.95 background kept
    assert allowed_class_pseudo_mask(probabilities, 2, 0.93).tolist() == [[0, 2, 255, 255]]
    # a background-labelled image has background only
    assert allowed_class_pseudo_mask(probabilities, 0, 0.9).tolist() == [[0, 255, 255, 255]]


def test_pseudo_mask_refuses_a_confidence_below_one_half_and_an_unknown_label():
    probabilities = np.full((1, 1, 3), 1 / 3)
    with pytest.raises(ConfigError, match=r"confidence must be in \[0.5, 1\], got 0.3"):
        allowed_class_pseudo_mask(probabilities, 1, 0.3)
    with pytest.raises(ConfigError, match="label 3 is not a class of probabilities with 3 classes"):
        allowed_class_pseudo_mask(probabilities, 3, 0.9)


class _FixedModel:
    """Logits that make the left half background and the right half class 2, whatever the image."""

    def __call__(self, images, training=False):
        assert training is False
        batch, height, width, _ = images.shape
        logits = np.zeros((batch, height, width, 3), np.float32)
        logits[:, :, : width // 2, 0] = 5.0
        logits[:, :, width // 2:, 2] = 5.0
        return {"mask": logits}


def test_pseudo_mask_set_runs_the_model_on_each_whole_image_and_crops_the_padding():
    images = [np.zeros((20, 40, 3), np.uint8), np.zeros((32, 32, 3), np.uint8)]
    masks = pseudo_mask_set(_FixedModel(), images, [1, 2], confidence=0.9).masks
    assert [m.shape for m in masks] == [(20, 40), (32, 32)]
    # image 0 is padded to 32 x 48: its right half of the padded width starts at column 24
    assert (masks[0][:, :24] == 0).all() and (masks[0][:, 24:] == 1).all()
    assert (masks[1][:, :16] == 0).all() and (masks[1][:, 16:] == 2).all()


def test_light_augmentation_moves_image_and_mask_together_and_keeps_classes():
    import tensorflow as tf

    from weaksegtf.training import light_augment

    rng = np.random.default_rng(0)
    mask = rng.integers(0, 3, (32, 32)).astype(np.int32)
    image = np.repeat((mask * 100 + 20)[..., None], 3, -1).astype(np.uint8)  # grey: only brightness/contrast act
    tf.random.set_seed(1)
    seen = set()
    for _ in range(12):
        out_image, out_mask = light_augment(tf.constant(image), tf.constant(mask), tf)
        out_image, out_mask = out_image.numpy(), out_mask.numpy()
        assert out_image.dtype == np.uint8 and out_mask.dtype == np.int32
        assert sorted(np.unique(out_mask)) == [0, 1, 2]
        # the jitter moves grey levels by far less than the 100 between classes
        np.testing.assert_array_equal(np.round((out_image[..., 0].astype(float) - 20) / 100), out_mask)
        seen.add(out_mask.tobytes())
    assert len(seen) > 1  # the flips and rotations do change the tile


def test_augment_modes_and_the_cli_flag():
    from weaksegtf.cli.train import build_parser
    from weaksegtf.training import augmentation_mode

    assert [augmentation_mode(a) for a in (False, True, "light")] == ["none", "full", "light"]
    with pytest.raises(ConfigError, match="augment 'heavy' is unknown"):
        augmentation_mode("heavy")
    parse = build_parser().parse_args
    base = ["--masks", "m", "--out", "o", "--classes", "a,b"]
    assert parse(base + ["--augment"]).augment == "full"
    assert parse(base + ["--augment", "light"]).augment == "light"


def _folders(tmp_path):
    from weaksegtf.data import LabelSet, MaskSet

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (32, 64, 3), dtype=np.uint8) for _ in range(3)]
    masks = [np.zeros((32, 64), np.uint8) for _ in range(3)]
    for m in masks:
        m[:, 32:] = 1
    masks[2][:, 32:] = 2
    mask_set = MaskSet(images[:2], masks[:2], ["a", "b"])
    label_set = LabelSet([rng.integers(0, 256, (40, 48, 3), dtype=np.uint8) for _ in range(3)], [1, 2, 1],
                         ["x", "y", "z"])
    return mask_set, label_set, MaskSet(images[2:], masks[2:], ["v"])


def test_self_training_writes_the_second_model_and_records_the_first_round(tmp_path):
    from weaksegtf.training import run_training

    masks, labels, val = _folders(tmp_path)
    result = run_training(masks, labels, val, tmp_path / "run", class_names=CLASSES, mode="S+C", tile_size_px=32,
                          epochs=1, steps_per_epoch=1, batch_size=2, verbose=0, self_training=True,
                          pseudo_confidence=0.5)
    metrics = json.loads(result.metrics_path.read_text())
    first = metrics["self_training"]
    assert first["pseudo_confidence"] == 0.5 and first["best_epoch"] == 1
    # confidence 0.5 leaves no pixel unannotated: 3 labelled images of 40 x 48 -> 2 x 2 tiles of 32 px each
    assert first["pseudo_annotated_share"] == 1.0 and first["n_pseudo_tiles"] == 12
    assert set(first["validation"]["dice"]) == set(CLASSES)
    assert metrics["n_mask_tiles"] == 4 and metrics["mode"] == "S+C"


def test_self_training_is_refused_without_whole_labelled_images(tmp_path):
    from weaksegtf.training import run_training

    masks, labels, val = _folders(tmp_path)
    with pytest.raises(ConfigError, match="self-training needs masks and whole labelled images"):
        run_training(masks, labels, val, tmp_path / "a", class_names=CLASSES, mode="S+C", label_tiles="grid",
                     tile_size_px=32, epochs=1, self_training=True)
    with pytest.raises(ConfigError, match="got mode S,"):
        run_training(masks, None, val, tmp_path / "b", class_names=CLASSES, mode="S", tile_size_px=32,
                     epochs=1, self_training=True)


def test_teacher_on_the_masks_alone_and_a_second_round(tmp_path):
    """teacher="S": the first model never sees the label stream; each round's model draws the next pseudo-masks."""
    from weaksegtf.training import run_training

    masks, labels, val = _folders(tmp_path)
    result = run_training(masks, labels, val, tmp_path / "run", class_names=CLASSES, mode="S+C", tile_size_px=32,
                          epochs=1, steps_per_epoch=1, batch_size=2, verbose=0, self_training=True,
                          pseudo_confidence=0.5, teacher="S", self_training_rounds=2)
    record = json.loads(result.metrics_path.read_text())["self_training"]
    assert record["teacher"] == "S"
    assert "cls_loss" not in record["history"] and "seg_loss" in record["history"]  # a mode-S first round
    later, = record["later_rounds"]  # the second round's teacher is the first student
    assert later["n_pseudo_tiles"] == 12 and later["pseudo_annotated_share"] == 1.0
    assert "cls_loss" not in later["history"]
    assert result.metrics["config"]["self_training_rounds"] == 2 and result.metrics["config"]["teacher"] == "S"


def test_teacher_and_rounds_are_checked_when_the_config_is_made():
    from weaksegtf.training import TrainingConfig

    with pytest.raises(ConfigError, match=r"teacher 'C' is unknown; expected one of \('S\+C', 'S'\)"):
        TrainingConfig(teacher="C")
    with pytest.raises(ConfigError, match="self_training_rounds must be a whole number >= 1, got 0"):
        TrainingConfig(self_training_rounds=0)
