"""Confusion-matrix based segmentation metrics in numpy (no TensorFlow).

All metrics derive from one C x C confusion matrix (rows truth, columns
prediction), which can be accumulated over any number of images or slides
without keeping them in memory (see
:class:`weaksegtf.metrics.SegmentationEvaluator`).

Equations follow Ciga & Martel: precision, recall and F1 are eqs. 1-3 of
"Learning to segment images with classification labels" (MedIA 2021),
accuracy, IoU and the BACH score are eqs. 1, 5 and 6 of its earlier version.
Pixel-wise F1 of a class equals its Dice coefficient.

Per-class values are NaN when undefined (a class absent from both truth and
prediction, or a precision with no predicted pixel); means skip NaN, so they
run over the classes that occur.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from weaksegtf.constants import IGNORE_VALUE
from weaksegtf.errors import DataError
from weaksegtf.io import json_float

# Pixels per bincount call: bounds the int64 temporaries for whole-slide arrays.
_CHUNK_PIXELS = 1 << 24


def confusion_matrix(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    num_classes: int,
    ignore_value: int = IGNORE_VALUE,
    region: np.ndarray | None = None,
) -> np.ndarray:
    """``(C, C)`` int64 counts; rows are true classes, columns predictions.

    Args:
        y_true: integer array of true classes, any shape.
        y_pred: integer array of predicted classes, same number of pixels.
        num_classes: int. Number of classes C.
        ignore_value: int. Truth value that means "not annotated"; those
            pixels are left out. Defaults to 255.
        region: bool array, optional. Only pixels where it is True count
            (for example :func:`weaksegtf.metrics.boundary_mask`). Defaults
            to ``None``: every annotated pixel.

    Raises:
        DataError: sizes differ, or a value lies outside ``0..C-1`` (truth
            values equal to ``ignore_value`` excepted).

    Example:
    >>> confusion_matrix(np.array([0, 1, 1, 255]), np.array([0, 1, 0, 1]), 2).tolist()
    [[1, 0], [1, 1]]
    """
    y_true = np.asarray(y_true).ravel()
    y_pred = np.asarray(y_pred).ravel()
    if y_true.shape != y_pred.shape:
        raise DataError(f"truth has {y_true.size} pixels but prediction has {y_pred.size}")
    keep = None
    if region is not None:
        keep = np.asarray(region, dtype=bool).ravel()
        if keep.shape != y_true.shape:
            raise DataError(f"region has {keep.size} pixels but truth has {y_true.size}")
    total = np.zeros(num_classes * num_classes, np.int64)
    for start in range(0, y_true.size, _CHUNK_PIXELS):
        true = y_true[start : start + _CHUNK_PIXELS]
        pred = y_pred[start : start + _CHUNK_PIXELS]
        valid = true != ignore_value
        if keep is not None:
            valid &= keep[start : start + _CHUNK_PIXELS]
        true, pred = true[valid].astype(np.int64), pred[valid].astype(np.int64)
        for name, values in (("truth", true), ("prediction", pred)):
            if values.size and (values.min() < 0 or values.max() >= num_classes):
                bad = values[(values < 0) | (values >= num_classes)][0]
                raise DataError(f"{name} value {bad} is out of range for {num_classes} classes")
        total += np.bincount(true * num_classes + pred, minlength=num_classes**2)
    return total.reshape(num_classes, num_classes)


def pixel_accuracy(confusion: np.ndarray) -> float:
    """(tp + tn) / all pixels, eq. 1 of the earlier version: the trace over the total."""
    total = confusion.sum()
    return float(np.trace(confusion) / total) if total else float("nan")


def foreground_accuracy(confusion: np.ndarray, background: int = 0) -> float:
    """Accuracy over pixels whose truth is not ``background`` (Ciga & Martel, earlier version, 3.2).

    NaN when no pixel has a foreground truth.
    """
    foreground = np.arange(len(confusion)) != background
    rows = confusion[foreground]
    total = rows.sum()
    return float(np.diag(confusion)[foreground].sum() / total) if total else float("nan")


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.maximum(denominator, 1), np.nan)


def precision_per_class(confusion: np.ndarray) -> np.ndarray:
    """tp / (tp + fp), eq. 1; NaN for a class never predicted."""
    return _ratio(np.diag(confusion).astype(np.float64), confusion.sum(0))


def recall_per_class(confusion: np.ndarray) -> np.ndarray:
    """tp / (tp + fn), eq. 2; NaN for a class absent from the truth."""
    return _ratio(np.diag(confusion).astype(np.float64), confusion.sum(1))


def iou_per_class(confusion: np.ndarray) -> np.ndarray:
    """IoU_c = TP / (TP + FP + FN) (earlier version, eq. 5); NaN for a class absent from truth and prediction."""
    tp = np.diag(confusion).astype(np.float64)
    return _ratio(tp, confusion.sum(0) + confusion.sum(1) - tp)


def dice_per_class(confusion: np.ndarray) -> np.ndarray:
    """Dice_c = 2 TP / (2 TP + FP + FN); NaN for a class absent from truth and prediction."""
    tp = np.diag(confusion).astype(np.float64)
    return _ratio(2 * tp, confusion.sum(0) + confusion.sum(1))


def f1_per_class(confusion: np.ndarray) -> np.ndarray:
    """F1 = precision * recall / ((precision + recall) / 2), eq. 3.

    Written as 2 TP / (2 TP + FP + FN), which is the same number (the Dice
    coefficient) and stays defined when precision is not: a class present in
    the truth but never predicted scores 0. NaN for a class absent from truth
    and prediction.
    """
    return dice_per_class(confusion)


def f1_macro(confusion: np.ndarray) -> float:
    """Mean of the per-class F1, each class weighing the same (section 3.2, "macro")."""
    f1 = f1_per_class(confusion)
    return float(np.nanmean(f1)) if np.isfinite(f1).any() else float("nan")


def f1_weighted(confusion: np.ndarray) -> float:
    """Per-class F1 weighted by each class's share of the true pixels.

    This is what Ciga & Martel call **F1 micro** (section 3.2: it "considers
    the class imbalance, weighing the scores per ground truth ratios"); in
    scikit-learn terms it is ``average="weighted"``, not ``"micro"``. Classes
    absent from the truth weigh 0. See :func:`f1_micro_pooled` for the pooled
    micro average.
    """
    support = confusion.sum(1).astype(np.float64)
    if support.sum() == 0:
        return float("nan")
    f1 = np.nan_to_num(f1_per_class(confusion), nan=0.0)
    return float((support * f1).sum() / support.sum())


def f1_micro_pooled(confusion: np.ndarray) -> float:
    """F1 from tp, fp and fn pooled over all classes (scikit-learn ``average="micro"``).

    With one class per pixel every false positive of one class is a false
    negative of another, so this always equals :func:`pixel_accuracy`; it is
    given for comparison with papers that use the pooled definition.
    """
    tp = np.trace(confusion)
    errors = confusion.sum() - tp
    denominator = 2 * tp + 2 * errors  # sum fp + sum fn = 2 x off-diagonal pixels
    return float(2 * tp / denominator) if denominator else float("nan")


def mean_iou(confusion: np.ndarray) -> float:
    """Mean IoU over the classes present in truth or prediction."""
    iou = iou_per_class(confusion)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


def mean_dice(confusion: np.ndarray) -> float:
    """Mean Dice over the classes present in truth or prediction (equals :func:`f1_macro`)."""
    dice = dice_per_class(confusion)
    return float(np.nanmean(dice)) if np.isfinite(dice).any() else float("nan")


def bach_score(confusion: np.ndarray, epsilon: float = 1e-12) -> float:
    """The BACH challenge score, eq. 6 of Ciga & Martel (earlier version), after Aresta et al. 2019.

    ``1 - sum_i |pred_i - gt_i| / (sum_i max(gt_i, |gt_i - (C - 1)|) * [gt_i > 0 or pred_i > 0] + eps)``

    Correctly predicted background is ignored; an error costs the distance
    between class indices, normalised by the largest error possible for that
    true class. The paper writes ``|gt_i - 3|`` for its 4 classes; here the
    largest index is ``C - 1``, so the same formula holds for any C (for
    C = 4 it is the paper's). Classes must be ordered so that index distance
    means something (BACH: normal, benign, in situ, invasive). 1 is perfect,
    0 the worst; an all-background truth predicted as all background scores 1.
    """
    num_classes = len(confusion)
    true = np.arange(num_classes)[:, None]
    pred = np.arange(num_classes)[None, :]
    counts = confusion.astype(np.float64)
    error = (counts * np.abs(pred - true)).sum()
    worst = np.maximum(true, np.abs(true - (num_classes - 1)))
    foreground = (true > 0) | (pred > 0)
    denominator = (counts * worst * foreground).sum()
    return float(1.0 - error / (denominator + epsilon))


def _named(values: np.ndarray, class_names: Sequence[str]) -> dict[str, float | None]:
    return {name: json_float(v) for name, v in zip(class_names, values)}


def metrics_from_confusion(confusion: np.ndarray, class_names: Sequence[str] | None = None) -> dict:
    """Every counts-based metric of one confusion matrix, as a JSON-ready dict (NaN becomes ``None``).

    Keys: ``pixel_accuracy``, ``foreground_accuracy``, ``f1_macro``,
    ``f1_weighted`` (the paper's "F1 micro"), ``f1_micro_pooled``,
    ``mean_iou``, ``mean_dice``, ``bach_score``, ``n_pixels``; per class
    ``precision``, ``recall``, ``f1``, ``iou``, ``dice``, ``support``
    (dicts keyed by class name); and ``confusion_matrix``.

    Example:
    >>> metrics_from_confusion(np.array([[3, 1], [0, 4]]), ["a", "b"])["f1"]
    {'a': 0.8571428571428571, 'b': 0.8888888888888888}
    """
    confusion = np.asarray(confusion, dtype=np.int64)
    if class_names is None:
        class_names = [f"class_{c}" for c in range(len(confusion))]
    if len(class_names) != len(confusion):
        raise DataError(f"got {len(class_names)} class names for a {len(confusion)}x{len(confusion)} confusion matrix")
    return {
        "pixel_accuracy": json_float(pixel_accuracy(confusion)),
        "foreground_accuracy": json_float(foreground_accuracy(confusion)),
        "f1_macro": json_float(f1_macro(confusion)),
        "f1_weighted": json_float(f1_weighted(confusion)),
        "f1_micro_pooled": json_float(f1_micro_pooled(confusion)),
        "mean_iou": json_float(mean_iou(confusion)),
        "mean_dice": json_float(mean_dice(confusion)),
        "bach_score": json_float(bach_score(confusion)) if confusion.sum() else None,
        "n_pixels": int(confusion.sum()),
        "precision": _named(precision_per_class(confusion), class_names),
        "recall": _named(recall_per_class(confusion), class_names),
        "f1": _named(f1_per_class(confusion), class_names),
        "iou": _named(iou_per_class(confusion), class_names),
        "dice": _named(dice_per_class(confusion), class_names),
        "support": {name: int(v) for name, v in zip(class_names, confusion.sum(1))},
        "confusion_matrix": confusion.tolist(),
    }


def foreground_dice(confusion: np.ndarray, background: int = 0) -> float:
    """Mean Dice of the foreground classes (every class but ``background``): GlaS's "gland Dice".

    Classes absent from truth and prediction are left out; NaN when all are.

    Example:
    >>> foreground_dice(np.array([[6, 2, 0], [0, 4, 0], [0, 1, 3]]))
    0.7922077922077921
    """
    dice = np.delete(dice_per_class(np.asarray(confusion)), background)
    return float(np.nanmean(dice)) if np.isfinite(dice).any() else float("nan")


def foreground_on_background(confusion: np.ndarray, background: int = 0) -> float:
    """Share of true-background pixels predicted as any foreground class ("gland on stroma").

    ``confusion[b, fg].sum() / confusion[b].sum()`` (rows are truth); NaN without background truth.

    Example:
    >>> foreground_on_background(np.array([[6, 2, 0], [0, 4, 0], [0, 1, 3]]))
    0.25
    """
    confusion = np.asarray(confusion)
    row = confusion[background]
    total = row.sum()
    return float((total - row[background]) / total) if total else float("nan")


def foreground_confusion(confusion: np.ndarray, background: int = 0) -> float:
    """Share of true-foreground pixels predicted foreground but as another foreground class.

    With GlaS's classes, benign/malignant confusion inside true glands:
    off-diagonal over all of the foreground-by-foreground block. NaN with
    fewer than two foreground classes or no foreground pixel predicted foreground.

    Example:
    >>> foreground_confusion(np.array([[6, 2, 0], [0, 4, 0], [0, 1, 3]]))
    0.125
    """
    confusion = np.asarray(confusion)
    keep = np.arange(len(confusion)) != background
    block = confusion[np.ix_(keep, keep)]
    total = block.sum()
    if len(block) < 2 or not total:
        return float("nan")
    return float((total - np.trace(block)) / total)
