"""Every numpy metric against values worked out by hand on tiny arrays."""

import numpy as np
import pytest

from weaksegtf.errors import ConfigError, DataError
from weaksegtf.metrics import (
    SegmentationEvaluator,
    bach_score,
    boundary_confusion_matrix,
    boundary_mask,
    class_edges,
    confusion_matrix,
    dice_per_class,
    f1_macro,
    f1_micro_pooled,
    f1_per_class,
    f1_weighted,
    foreground_accuracy,
    iou_per_class,
    mean_dice,
    mean_iou,
    metrics_from_confusion,
    pixel_accuracy,
    precision_per_class,
    recall_per_class,
)

# 12 background pixels, 3 of class 1 and 1 of class 2: an imbalanced 4x4 case.
TRUTH = np.array([[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 1], [0, 0, 1, 2]])
PRED = np.array([[0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 1], [0, 0, 2, 1]])
CM = np.array([[11, 1, 0], [0, 2, 1], [0, 1, 0]])


def test_confusion_matrix_of_the_4x4_case():
    assert confusion_matrix(TRUTH, PRED, 3).tolist() == CM.tolist()


def test_accuracy_precision_recall_f1_iou_dice_by_hand():
    assert pixel_accuracy(CM) == pytest.approx(13 / 16)
    # Column sums (predicted) 11, 4, 1; row sums (truth) 12, 3, 1.
    np.testing.assert_allclose(precision_per_class(CM), [1, 2 / 4, 0])
    np.testing.assert_allclose(recall_per_class(CM), [11 / 12, 2 / 3, 0])
    # F1 = P R / ((P + R) / 2): class 0: (11/12) / ((1 + 11/12) / 2) = 22/23; class 1: 4/7; class 2: 0.
    np.testing.assert_allclose(f1_per_class(CM), [22 / 23, 4 / 7, 0])
    np.testing.assert_allclose(dice_per_class(CM), [22 / 23, 4 / 7, 0])
    np.testing.assert_allclose(iou_per_class(CM), [11 / 12, 2 / 5, 0])
    assert mean_iou(CM) == pytest.approx((11 / 12 + 2 / 5) / 3)
    assert mean_dice(CM) == pytest.approx((22 / 23 + 4 / 7) / 3)


def test_micro_and_macro_f1_differ_on_an_imbalanced_case():
    macro = (22 / 23 + 4 / 7 + 0) / 3
    # The paper's "micro": class F1 weighted by true pixel share 12/16, 3/16, 1/16.
    weighted = (12 * 22 / 23 + 3 * 4 / 7 + 1 * 0) / 16
    assert f1_macro(CM) == pytest.approx(macro)
    assert f1_weighted(CM) == pytest.approx(weighted)
    assert f1_weighted(CM) - f1_macro(CM) > 0.3
    # Pooled micro F1 (scikit-learn "micro") is the pixel accuracy.
    assert f1_micro_pooled(CM) == pytest.approx(13 / 16)


def test_foreground_accuracy_counts_only_non_background_truth():
    # Truth > 0 at 4 pixels, of which 2 are right.
    assert foreground_accuracy(CM) == pytest.approx(2 / 4)
    assert np.isnan(foreground_accuracy(np.array([[5, 1], [0, 0]])))


def test_bach_score_generalised_to_three_classes():
    # max(gt, |gt - (C - 1)|) = 2, 1, 2 for gt = 0, 1, 2. Errors cost 1 each (3 pixels).
    # Pixels with gt > 0 or pred > 0: (0->1) weighs 2, three gt=1 pixels weigh 1, one gt=2 weighs 2: 7.
    assert bach_score(CM) == pytest.approx(1 - 3 / 7)


def _bach_pixelwise(truth, prediction, num_classes):
    """Eq. 6 of the earlier paper written literally, pixel by pixel (4 classes: |gt - 3|)."""
    numerator = denominator = 0.0
    for gt, pred in zip(truth.ravel(), prediction.ravel()):
        numerator += abs(int(pred) - int(gt))
        either_foreground = 1 - (1 - (pred > 0)) * (1 - (gt > 0))
        denominator += max(gt, abs(gt - (num_classes - 1))) * either_foreground
    return 1 - numerator / (denominator + 1e-12)


def test_bach_score_worked_example_with_the_four_bach_classes():
    truth = np.array([[0, 0, 1], [2, 3, 3], [0, 1, 2]])
    prediction = np.array([[0, 3, 1], [1, 3, 0], [0, 0, 2]])
    # Background predicted as background (2 pixels) is ignored. Errors: 0->3 (3), 2->1 (1),
    # 3->0 (3), 1->0 (1): 8. Weights max(gt, |gt - 3|): 3 + 2 + 2 + 3 + 3 + 2 + 2 = 17.
    cm = confusion_matrix(truth, prediction, 4)
    assert bach_score(cm) == pytest.approx(1 - 8 / 17)
    assert bach_score(cm) == pytest.approx(_bach_pixelwise(truth, prediction, 4))
    assert bach_score(confusion_matrix(truth, truth, 4)) == pytest.approx(1.0)
    assert bach_score(np.array([[9, 0], [0, 0]])) == 1.0  # all background, all right


def test_undefined_values_are_nan_and_means_skip_them():
    cm = np.array([[4, 0, 0], [0, 0, 0], [2, 0, 0]])  # class 1 absent, class 2 never predicted
    assert np.isnan(iou_per_class(cm)[1]) and np.isnan(precision_per_class(cm)[2])
    assert f1_per_class(cm)[2] == 0.0
    assert mean_iou(cm) == pytest.approx((4 / 6 + 0) / 2)
    assert f1_macro(cm) == pytest.approx((8 / 10 + 0) / 2)


def test_metrics_from_confusion_is_json_ready():
    metrics = metrics_from_confusion(CM, ["bg", "benign", "malignant"])
    assert metrics["f1_weighted"] == pytest.approx(f1_weighted(CM))
    assert metrics["support"] == {"bg": 12, "benign": 3, "malignant": 1}
    assert metrics["confusion_matrix"] == CM.tolist() and metrics["n_pixels"] == 16
    empty = metrics_from_confusion(np.array([[3, 0], [0, 0]]), ["a", "b"])
    assert empty["iou"]["b"] is None and empty["precision"]["b"] is None
    with pytest.raises(DataError, match="got 2 class names for a 3x3 confusion matrix"):
        metrics_from_confusion(CM, ["a", "b"])


def test_confusion_matrix_region_and_range_errors():
    region = np.zeros((4, 4), bool)
    region[3] = True
    assert confusion_matrix(TRUTH, PRED, 3, region=region).tolist() == [[2, 0, 0], [0, 0, 1], [0, 1, 0]]
    bad = PRED.copy()
    bad[0, 0] = 3
    with pytest.raises(DataError, match="prediction value 3 is out of range for 3 classes"):
        confusion_matrix(TRUTH, bad, 3)


# A 2x3 block of class 1 in a 6x6 background; (0, 0) is not annotated.
BLOCK = np.zeros((6, 6), np.uint8)
BLOCK[2:4, 2:5] = 1
BLOCK[0, 0] = 255


def test_boundary_mask_exact_pixels():
    expected_0 = [
        [0, 0, 0, 0, 0, 0],
        [0, 0, 1, 1, 1, 0],
        [0, 1, 1, 1, 1, 1],
        [0, 1, 1, 1, 1, 1],
        [0, 0, 1, 1, 1, 0],
        [0, 0, 0, 0, 0, 0],
    ]
    # distance 1 adds the 4-neighbours of boundary pixels; diagonals are sqrt(2) away.
    expected_1 = [
        [0, 0, 1, 1, 1, 0],
        [0, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1, 1],
        [0, 1, 1, 1, 1, 1],
        [0, 0, 1, 1, 1, 0],
    ]
    assert boundary_mask(BLOCK, 0).astype(int).tolist() == expected_0
    assert boundary_mask(BLOCK, 0.5).astype(int).tolist() == expected_0
    assert boundary_mask(BLOCK, 1).astype(int).tolist() == expected_1
    at_1_5 = boundary_mask(BLOCK, 1.5)
    # sqrt(2) from a boundary pixel: in; sqrt(5): out; not annotated: never.
    assert at_1_5[0, 1] and at_1_5[5, 5] and at_1_5[1, 0]
    assert not at_1_5[5, 0] and not at_1_5[0, 0]
    assert not boundary_mask(np.ones((4, 4), np.uint8), 2).any()


def test_not_annotated_pixels_make_no_boundary():
    assert class_edges(np.array([[0, 255, 1]])).tolist() == [[False, False, False]]
    assert class_edges(np.array([[0, 1]])).tolist() == [[True, True]]
    with pytest.raises(ConfigError, match="distance_px must be a finite number >= 0, got -1"):
        boundary_mask(BLOCK, -1)


def test_boundary_confusion_counts_only_the_band():
    prediction = np.zeros((6, 6), np.uint8)  # misses the whole block
    cm = boundary_confusion_matrix(BLOCK, prediction, 2, 0)
    # Band at distance 0: 6 block pixels and 10 background pixels.
    assert cm.tolist() == [[10, 0], [6, 0]]
    assert iou_per_class(cm).tolist()[0] == pytest.approx(10 / 16)


def test_accumulated_metrics_equal_one_go():
    rng = np.random.default_rng(0)
    truths = [rng.integers(0, 3, (h, w)).astype(np.uint8) for h, w in [(7, 5), (9, 4), (6, 6)]]
    for truth in truths:
        truth[rng.random(truth.shape) < 0.1] = 255
    preds = [rng.integers(0, 3, t.shape).astype(np.uint8) for t in truths]
    evaluator = SegmentationEvaluator(class_names=["a", "b", "c"], boundary_distance_px=1.5)
    banded = SegmentationEvaluator(num_classes=3, boundary_distance_px=1.5, band_pixels=12)  # 2-3 rows
    for i, (t, p) in enumerate(zip(truths, preds)):
        row = evaluator.update(t, p, name=f"img{i}")
        banded.update(t, p)
        assert row["pixel_accuracy"] == pytest.approx(pixel_accuracy(confusion_matrix(t, p, 3)))
    all_truth = np.concatenate([t.ravel() for t in truths])
    all_pred = np.concatenate([p.ravel() for p in preds])
    one_go = metrics_from_confusion(confusion_matrix(all_truth, all_pred, 3), ["a", "b", "c"])
    result = evaluator.result()
    for key in ("pixel_accuracy", "f1_macro", "f1_weighted", "mean_iou", "bach_score", "foreground_accuracy"):
        assert result[key] == pytest.approx(one_go[key])
    assert result["confusion_matrix"] == one_go["confusion_matrix"] and result["n_images"] == 3
    boundary = sum(boundary_confusion_matrix(t, p, 3, 1.5) for t, p in zip(truths, preds))
    assert result["boundary"]["confusion_matrix"] == boundary.tolist()
    # Bands of 2-3 rows with their halo give exactly the whole-image numbers.
    assert banded.boundary_confusion.tolist() == boundary.tolist()
    assert banded.confusion.tolist() == evaluator.confusion.tolist()
    assert [r["name"] for r in evaluator.rows] == ["img0", "img1", "img2"]


def test_evaluator_errors_name_the_image():
    evaluator = SegmentationEvaluator(num_classes=2)
    with pytest.raises(DataError, match=r"prediction for a.png has shape \(2, 3\) but truth is \(2, 2\)"):
        evaluator.update(np.zeros((2, 2)), np.zeros((2, 3)), name="a.png")
    with pytest.raises(DataError, match="prediction value 4 is out of range for 2 classes for b.png"):
        evaluator.update(np.zeros((2, 2)), np.full((2, 2), 4), name="b.png")
    assert evaluator.n_images == 0
