"""Segmentation metrics. Everything here but ``keras_metrics`` is numpy/OpenCV (no TensorFlow)."""

from weaksegtf.metrics.boundary import boundary_confusion_matrix, boundary_mask, class_edges
from weaksegtf.metrics.confusion import (
    bach_score,
    confusion_matrix,
    dice_per_class,
    f1_macro,
    f1_micro_pooled,
    f1_per_class,
    f1_weighted,
    foreground_accuracy,
    foreground_confusion,
    foreground_dice,
    foreground_on_background,
    iou_per_class,
    mean_dice,
    mean_iou,
    metrics_from_confusion,
    pixel_accuracy,
    precision_per_class,
    recall_per_class,
)
from weaksegtf.metrics.segmentation_evaluator import SegmentationEvaluator

__all__ = [
    "SegmentationEvaluator",
    "bach_score",
    "boundary_confusion_matrix",
    "boundary_mask",
    "class_edges",
    "confusion_matrix",
    "dice_per_class",
    "f1_macro",
    "f1_micro_pooled",
    "f1_per_class",
    "f1_weighted",
    "foreground_accuracy",
    "foreground_confusion",
    "foreground_dice",
    "foreground_on_background",
    "iou_per_class",
    "mean_dice",
    "mean_iou",
    "metrics_from_confusion",
    "pixel_accuracy",
    "precision_per_class",
    "recall_per_class",
]
