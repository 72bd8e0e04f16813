"""Loss and metric values worked out by hand on tiny arrays."""

import math

import numpy as np
import pytest

from weaksegtf.losses import WeightedCrossEntropy, class_weights_from_counts, weighted_cross_entropy
from weaksegtf.metrics.confusion import confusion_matrix, dice_per_class, iou_per_class, pixel_accuracy
from weaksegtf.metrics.keras_metrics import DiceScore, MeanIoU, PixelAccuracy


def test_weighted_cross_entropy_on_a_4x4_example():
    # Every pixel has logits [ln 3, 0]: p(class 0) = 3/4, so CE is ln(4/3) for
    # class 0 and ln 4 for class 1. 12 pixels of class 0, 3 of class 1, one not annotated.
    mask = np.zeros((1, 4, 4), "int32")
    mask[0, 0, :3] = 1
    mask[0, 3, 3] = 255
    logits = np.zeros((1, 4, 4, 2), "float32")
    logits[..., 0] = math.log(3)
    weights = [0.5, 2.0]
    expected = (12 * 0.5 * math.log(4 / 3) + 3 * 2.0 * math.log(4)) / (12 * 0.5 + 3 * 2.0)
    assert expected == pytest.approx(0.5 * math.log(16 / 3))
    assert float(weighted_cross_entropy(mask, logits, weights)) == pytest.approx(expected, rel=1e-6)
    assert float(WeightedCrossEntropy(weights)(mask, logits)) == pytest.approx(expected, rel=1e-6)
    unweighted = (12 * math.log(4 / 3) + 3 * math.log(4)) / 15
    assert float(weighted_cross_entropy(mask, logits)) == pytest.approx(unweighted, rel=1e-6)


def test_no_annotated_pixel_gives_zero_not_nan():
    mask = np.full((1, 4, 4), 255, "int32")
    assert float(weighted_cross_entropy(mask, np.zeros((1, 4, 4, 2), "float32"), [1.0, 1.0])) == 0.0


def test_loss_config_round_trip():
    loss = WeightedCrossEntropy([0.5, 2.0], ignore_value=9)
    clone = WeightedCrossEntropy.from_config(loss.get_config())
    assert clone.class_weights == [0.5, 2.0] and clone.ignore_value == 9


def test_class_weights_are_inverse_frequency():
    weights = class_weights_from_counts([30, 10, 0])
    assert weights.tolist() == pytest.approx([40 / 60, 40 / 20, 1.0])
    # The average annotated pixel weighs 1.
    assert (weights[:2] * np.array([30, 10])).sum() / 40 == pytest.approx(1.0)


def _three_by_three():
    truth = np.array([[0, 0, 1], [0, 1, 1], [2, 2, 255]])
    prediction = np.array([[0, 1, 1], [0, 1, 2], [2, 0, 0]])
    return truth, prediction


def test_numpy_metrics_on_a_3x3_example():
    truth, prediction = _three_by_three()
    cm = confusion_matrix(truth, prediction, 3)
    # Rows truth, columns prediction; the 255 pixel is left out.
    assert cm.tolist() == [[2, 1, 0], [0, 2, 1], [1, 0, 1]]
    assert pixel_accuracy(cm) == pytest.approx(5 / 8)
    # IoU: class 0: 2/(3+3-2)=1/2, class 1: 2/(3+3-2)=1/2, class 2: 1/(2+2-1)=1/3
    np.testing.assert_allclose(iou_per_class(cm), [1 / 2, 1 / 2, 1 / 3])
    np.testing.assert_allclose(dice_per_class(cm), [2 / 3, 2 / 3, 1 / 2])


def test_keras_metrics_match_numpy():
    truth, prediction = _three_by_three()
    logits = np.eye(3, dtype="float32")[prediction][None]
    acc, miou = PixelAccuracy(3), MeanIoU(3)
    dice = [DiceScore(3, c) for c in range(3)]
    for metric in [acc, miou, *dice]:
        metric.update_state(truth[None], logits)
    assert float(acc.result()) == pytest.approx(5 / 8)
    assert float(miou.result()) == pytest.approx((1 / 2 + 1 / 2 + 1 / 3) / 3)
    assert [float(d.result()) for d in dice] == pytest.approx([2 / 3, 2 / 3, 1 / 2])
