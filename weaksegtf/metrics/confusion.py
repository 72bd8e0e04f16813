"""Confusion-matrix based segmentation metrics in numpy (no TensorFlow).

All metrics derive from one C x C confusion matrix, which can be accumulated
over any number of images or slides without keeping them in memory.
"""

from __future__ import annotations

import numpy as np

from weaksegtf.errors import DataError

IGNORE_VALUE = 255


def confusion_matrix(
    y_true: np.ndarray, y_pred: np.ndarray, num_classes: int, ignore_value: int = IGNORE_VALUE
) -> np.ndarray:
    """``(C, C)`` int64 counts; rows are true classes, columns predictions.

    Pixels whose truth equals ``ignore_value`` are left out.
    """
    y_true = np.asarray(y_true).ravel()
    y_pred = np.asarray(y_pred).ravel()
    if y_true.shape != y_pred.shape:
        raise DataError(f"truth has {y_true.size} pixels but prediction has {y_pred.size}")
    valid = y_true != ignore_value
    y_true, y_pred = y_true[valid].astype(np.int64), y_pred[valid].astype(np.int64)
    for name, values in (("truth", y_true), ("prediction", y_pred)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            bad = values[(values < 0) | (values >= num_classes)][0]
            raise DataError(f"{name} value {bad} is out of range for {num_classes} classes")
    return np.bincount(y_true * num_classes + y_pred, minlength=num_classes**2).reshape(
        num_classes, num_classes
    )


def pixel_accuracy(confusion: np.ndarray) -> float:
    total = confusion.sum()
    return float(np.trace(confusion) / total) if total else float("nan")


def iou_per_class(confusion: np.ndarray) -> np.ndarray:
    """IoU_c = TP / (TP + FP + FN); NaN for a class absent from truth and prediction."""
    tp = np.diag(confusion).astype(np.float64)
    denominator = confusion.sum(0) + confusion.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, tp / denominator, np.nan)


def dice_per_class(confusion: np.ndarray) -> np.ndarray:
    """Dice_c = 2 TP / (2 TP + FP + FN); NaN for a class absent from truth and prediction."""
    tp = np.diag(confusion).astype(np.float64)
    denominator = confusion.sum(0) + confusion.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, 2 * tp / denominator, np.nan)
