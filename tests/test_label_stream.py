"""The label stream as the paper means it: whole labelled images (padding excluded from the classifier's
pooling), background tiles mined from the masks, the class-weighted classification loss, and best-epoch
selection on whole validation images in inference mode."""

from __future__ import annotations

import math

import numpy as np
import pytest

from weaksegtf.data import LabelSet, MaskSet, background_tiles, label_set_to_images


def test_whole_images_pass_as_they_are_and_large_ones_shrink_to_the_bound():
    small = np.full((40, 50, 3), 7, np.uint8)
    large = np.full((300, 600, 3), 9, np.uint8)
    images, labels = label_set_to_images(LabelSet([small, large], [1, 2], ["a", "b"]), max_size_px=200)
    assert images[0] is small
    assert images[1].shape == (100, 200, 3) and int(images[1][50, 100, 0]) == 9
    assert labels.tolist() == [1, 2] and labels.dtype == np.int32


def test_background_tiles_are_the_tiles_at_least_90_percent_background():
    image = np.arange(64 * 64 * 3, dtype=np.uint32).reshape(64, 64, 3).astype(np.uint8)
    mask = np.ones((64, 64), np.uint8)
    mask[:32, :32] = 0  # tile (0, 0): all background
    mask[:32, 32:] = 0
    mask[:4, 32:36] = 2  # tile (0, 32): 16 of 1024 pixels gland -> 98.4% background, still background
    mask[32:, :32] = 0
    mask[32:36, :32] = 1  # tile (32, 0): 128 of 1024 gland -> 87.5% background, not a background tile
    tiles = background_tiles(MaskSet([image], [mask], ["a"]), 32)
    assert tiles.shape == (2, 32, 32, 3)
    np.testing.assert_array_equal(tiles[0], image[:32, :32])
    np.testing.assert_array_equal(tiles[1], image[:32, 32:])


def test_masked_average_by_hand():
    from weaksegtf.models.classifier_head import masked_average

    values = np.array([[[[1.0, 10.0], [3.0, 30.0]], [[5.0, 50.0], [7.0, 70.0]]]], np.float32)  # (1, 2, 2, 2)
    weights = np.array([[[1.0, 0.5], [0.0, 0.0]]], np.float32)
    # channel 0: (1 * 1 + 0.5 * 3) / 1.5 = 5/3; channel 1: (10 + 15) / 1.5 = 50/3
    np.testing.assert_allclose(np.asarray(masked_average(values, weights)).reshape(-1), [5 / 3, 50 / 3], rtol=1e-6)


def test_classifier_pooling_ignores_padding():
    from weaksegtf.models import ClassifierHead

    head = ClassifierHead(num_classes=3)
    rng = np.random.default_rng(0)
    real = rng.normal(size=(1, 3, 5, 3)).astype(np.float32)
    padded = np.zeros((1, 6, 8, 3), np.float32) + 100.0  # the padding holds huge logits
    padded[:, :3, :5] = real
    valid = np.zeros((1, 6, 8), np.float32)
    valid[:, :3, :5] = 1.0
    expected = np.asarray(head(real, training=False))
    np.testing.assert_allclose(np.asarray(head(padded, valid=valid, training=False)), expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(np.asarray(head(padded, training=False)), expected, atol=1e-3)


def test_whole_image_batches_pad_to_16_and_carry_the_valid_pixel_map():
    from weaksegtf.training import make_train_dataset

    sizes = [(40, 50), (33, 70)]
    images = [np.full((h, w, 3), 10 * (i + 1), np.uint8) for i, (h, w) in enumerate(sizes)]
    masks = np.zeros((2, 32, 32), np.uint8)
    dataset, steps = make_train_dataset(
        np.zeros((2, 32, 32, 3), np.uint8), masks, images, np.array([1, 2]), batch_size=2, label_batch_size=2
    )
    assert steps == 1
    batch = next(iter(dataset))
    x, y, valid = (np.asarray(t) for t in batch["label"])
    assert x.shape == (2, 48, 80, 3) and valid.shape == (2, 48, 80)  # 40x50 -> 48x64, 33x70 -> 48x80, batch max
    for i in range(2):
        h, w = sizes[y[i] - 1]
        assert valid[i].sum() == h * w and valid[i, :h, :w].all()
        assert (x[i][valid[i] == 1] == 10 * y[i]).all() and (x[i][valid[i] == 0] == 255).all()


def test_background_tiles_join_in_proportion_to_their_count():
    from weaksegtf.training import make_train_dataset

    images = [np.zeros((32, 32, 3), np.uint8)] * 8
    dataset, _ = make_train_dataset(
        np.zeros((4, 32, 32, 3), np.uint8), np.zeros((4, 32, 32), np.uint8), images, np.ones(8, np.int32),
        batch_size=4, background_images=np.zeros((4, 32, 32, 3), np.uint8), label_batch_size=4,
    )
    batch = next(iter(dataset))
    assert np.asarray(batch["background"][0]).shape == (2, 32, 32, 3)  # 4 images : 2 tiles = 8 : 4
    assert np.asarray(batch["background"][1]).tolist() == [0, 0]


def test_valid_share_per_logit_cell():
    from weaksegtf.models import WeakSegmenter

    model = WeakSegmenter(num_classes=2)
    valid = np.zeros((1, 16, 16), np.float32)
    valid[0, :12, :10] = 1.0
    share = np.asarray(model._valid_share(valid))[0]
    np.testing.assert_allclose(share, [[1.0, 2 / 8], [4 / 8, 8 / 64]])


def test_classification_loss_is_class_weighted_over_all_sub_batches():
    from weaksegtf.losses import weighted_cross_entropy

    logits = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0], [1.0, 1.0, 1.0]], np.float32)
    labels = np.array([0, 1, 1, 2])
    weights = [0.5, 1.0, 2.0]
    ce = -np.log(np.exp(logits[np.arange(4), labels]) / np.exp(logits).sum(1))
    w = np.array(weights)[labels]
    expected = (w * ce).sum() / w.sum()
    assert float(weighted_cross_entropy(labels, logits, weights, ignore_value=-1)) == pytest.approx(expected, rel=1e-6)


@pytest.mark.slow
def test_label_weights_are_inverse_label_frequency_with_background_tiles():
    from weaksegtf.training import train_weak_segmenter

    rng = np.random.default_rng(0)
    mask_x = rng.integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)
    mask_y = rng.integers(0, 3, (4, 32, 32)).astype(np.uint8)
    whole = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for h, w in [(40, 50), (33, 70), (20, 20)]]
    model, history = train_weak_segmenter(
        mask_x, mask_y, whole, np.array([1, 2, 2]), num_classes=3, mode="S+C", epochs=1, steps_per_epoch=2,
        batch_size=2, background_images=rng.integers(0, 255, (3, 32, 32, 3), dtype=np.uint8), verbose=0,
    )
    # items: 3 background tiles, 1 benign, 2 malignant -> w_c = 6 / (3 n_c)
    np.testing.assert_allclose(model.label_class_weights, [2 / 3, 2.0, 1.0])
    assert math.isfinite(history.history["cls_loss"][-1])


def test_best_epoch_weights_are_restored():
    import keras

    from weaksegtf.models import WeakSegmenter
    from weaksegtf.whole_image_validation import WholeImageValidation

    keras.utils.set_random_seed(0)
    model = WeakSegmenter(num_classes=3)
    images = [np.full((20, 36, 3), 128, np.uint8)]
    masks = [np.full((20, 36), 2, np.uint8)]
    callback = WholeImageValidation(images, masks, ["a", "b", "c"])
    callback.set_model(model)
    bias = model.segmentation_head.classify.bias
    logs_seen = []
    for epoch, favoured in enumerate([0, 2, 1]):  # epoch 2 predicts the true class everywhere
        bias.assign(np.eye(3, dtype=np.float32)[favoured] * 1000.0)
        logs: dict = {}
        callback.on_epoch_end(epoch, logs)
        logs_seen.append(logs["val_mean_dice"])
    callback.on_train_end()
    assert callback.best_epoch == 2 and logs_seen[1] == max(logs_seen)
    assert callback.best_metrics["dice"]["c"] == 1.0
    np.testing.assert_array_equal(np.asarray(bias), np.eye(3, dtype=np.float32)[2] * 1000.0)


def test_label_batches_leave_the_segmentation_batch_norm_statistics_to_the_mask_batch():
    import keras

    from weaksegtf.models import WeakSegmenter

    rng = np.random.default_rng(0)
    mask_batch = (rng.uniform(0, 255, (2, 32, 32, 3)).astype(np.float32), rng.integers(0, 3, (2, 32, 32)))
    label_batch = (np.full((2, 32, 32, 3), 250.0, np.float32), np.array([1, 2]))  # glass-like, very unlike masks
    stats = {}
    for streams in (["mask"], ["mask", "label"]):
        keras.utils.set_random_seed(0)
        model = WeakSegmenter(num_classes=3)
        model.compile(optimizer=keras.optimizers.SGD(0.0))
        model.train_on_batch({name: {"mask": mask_batch, "label": label_batch}[name] for name in streams})
        stats[len(streams)] = [np.asarray(v) for v in model.segmentation_statistics]
        classifier_stats = [np.asarray(v) for v in model.classifier_head.non_trainable_variables]
    for alone, joint in zip(stats[1], stats[2]):
        np.testing.assert_array_equal(alone, joint)
    assert not np.allclose(classifier_stats[0], 0.0)  # the classifier's own batch norm still learns from labels


def test_precise_batch_norm_statistics_are_the_mean_of_batch_statistics():
    import keras

    from weaksegtf.models import WeakSegmenter
    from weaksegtf.precise_batch_norm import batch_norm_layers, recompute_batch_norm_statistics

    keras.utils.set_random_seed(0)
    model = WeakSegmenter(num_classes=3)
    images = np.random.default_rng(0).uniform(0, 255, (6, 32, 32, 3)).astype(np.float32)
    weights_before = [np.asarray(w) for w in model.trainable_weights]
    assert recompute_batch_norm_statistics(model, images, batch_size=3, seed=0) == 2
    conv1 = keras.Model(model.encoder.inputs, model.encoder.get_layer("conv1").output)
    order = np.random.default_rng(0).permutation(6)
    features = [np.asarray(conv1(model.preprocess(images[order[i * 3 : (i + 1) * 3]]))) for i in range(2)]
    bn1 = batch_norm_layers(model)[0]
    assert bn1.name == "bn1"
    np.testing.assert_allclose(np.asarray(bn1.moving_mean), np.mean([f.mean((0, 1, 2)) for f in features], 0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(bn1.moving_variance), np.mean([f.var((0, 1, 2)) for f in features], 0), rtol=1e-3, atol=1e-3)
    assert bn1.momentum == 0.9
    for before, after in zip(weights_before, model.trainable_weights):
        np.testing.assert_array_equal(before, np.asarray(after))


def test_allowed_class_loss_by_hand_with_padding_weights():
    from weaksegtf.losses import allowed_class_cross_entropy

    logits = np.array([[[[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]]])  # one image, 1 x 2 cells, 3 classes
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    # label 2 allows background and class 2; the second cell is half padding
    expected = -(np.log(p[0, 0, 0, 0] + p[0, 0, 0, 2]) * 1.0 + np.log(p[0, 0, 1, 0] + p[0, 0, 1, 2]) * 0.5) / 1.5
    got = float(allowed_class_cross_entropy(np.array([2]), logits, np.array([[[1.0, 0.5]]])))
    assert got == pytest.approx(expected, rel=1e-6)
    # a background patch allows background only
    assert float(allowed_class_cross_entropy(np.array([0]), logits[:, :, :1])) == pytest.approx(-np.log(p[0, 0, 0, 0]), rel=1e-6)


def test_recipe_default_of_the_allowed_class_loss_is_the_same_in_the_cli_and_run_training():
    from weaksegtf.cli.train import build_parser
    from weaksegtf.training import DEFAULT_ALLOWED_CLASS_WEIGHT, TrainingConfig

    args = build_parser().parse_args(["--masks", "m", "--out", "o", "--classes", "a,b"])
    assert args.allowed_class_weight == DEFAULT_ALLOWED_CLASS_WEIGHT == 1.0
    # run_training and train_weak_segmenter both take their settings from a TrainingConfig
    assert TrainingConfig().allowed_class_weight == 1.0


def test_present_class_size_loss_by_hand():
    from weaksegtf.losses import present_class_size_loss

    logits = np.array([[[[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]]], [[[0.0, 0.0, 3.0], [0.0, 0.0, 3.0]]]])
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    # image 0 labelled 1: share of class 1 over its two cells, the second counts half (padding)
    share0 = (p[0, 0, 0, 1] * 1.0 + p[0, 0, 1, 1] * 0.5) / 1.5
    valid = np.array([[[1.0, 0.5]], [[1.0, 1.0]]])
    got = float(present_class_size_loss(np.array([1, 2]), logits, valid, min_share=0.4))
    # image 1 labelled 2 covers p = 0.91 > 0.4: no penalty; mean over the two foreground-labelled images
    assert got == pytest.approx(max(0.0, np.log(0.4) - np.log(share0)) / 2, rel=1e-6)
    assert share0 < 0.4 and got > 0
    # background-labelled items add nothing
    assert float(present_class_size_loss(np.array([0, 0]), logits, valid, min_share=0.9)) == 0.0
