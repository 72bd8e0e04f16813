"""Metrics accumulated over many images or slides, holding only confusion matrices."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from weaksegtf.errors import ConfigError, DataError
from weaksegtf.io import json_float
from weaksegtf.metrics.boundary import boundary_mask
from weaksegtf.metrics.confusion import (
    IGNORE_VALUE,
    confusion_matrix,
    dice_per_class,
    iou_per_class,
    mean_dice,
    mean_iou,
    metrics_from_confusion,
)

#: Scalar metrics kept for every image (per-image CSV rows).
PER_IMAGE_METRICS = (
    "pixel_accuracy",
    "foreground_accuracy",
    "f1_macro",
    "f1_weighted",
    "mean_iou",
    "mean_dice",
    "bach_score",
)


class SegmentationEvaluator:
    """Sums confusion matrices over images, then reports every metric of the sum.

    Each :meth:`update` adds one image's confusion matrix (and, when
    ``boundary_distance_px`` is set, the confusion matrix of the pixels within
    that distance of the true class boundaries) and forgets the arrays, so a
    test set of whole slides needs the memory of one slide at a time. Large
    images are processed in bands of about ``band_pixels`` pixels (whole rows);
    the result is exactly that of the whole image. Metrics of the sum weigh every pixel the same
    (a large slide counts more than a small one), as the paper's WSI metrics do.

    Args:
        num_classes: int, optional. Number of classes; taken from
            ``class_names`` when omitted.
        class_names: list of str, optional. Defaults to ``class_0 .. class_{C-1}``.
        ignore_value: int. Truth value of not-annotated pixels. Defaults to 255.
        boundary_distance_px: float, optional. Half-width of the boundary band
            (:func:`weaksegtf.metrics.boundary_mask`). Defaults to 3.0;
            ``None`` skips boundary metrics.
        keep_rows: bool. Keep one dict of scalar metrics per image in
            :attr:`rows`. Defaults to ``True``.
        band_pixels: int. Pixels per band for large images (bounds the
            temporaries of the distance transform). Defaults to 2**24.

    Example:
    >>> evaluator = SegmentationEvaluator(class_names=["background", "gland"])
    >>> evaluator.update(np.array([[0, 1], [1, 1]]), np.array([[0, 1], [0, 1]]), name="a")["pixel_accuracy"]
    0.75
    >>> evaluator.result()["f1"]["gland"]
    0.8
    """

    def __init__(
        self,
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
        ignore_value: int = IGNORE_VALUE,
        boundary_distance_px: float | None = 3.0,
        keep_rows: bool = True,
        band_pixels: int = 1 << 24,
    ):
        if num_classes is None and class_names is None:
            raise ConfigError("give num_classes or class_names")
        if num_classes is None:
            num_classes = len(class_names)
        if class_names is None:
            class_names = [f"class_{c}" for c in range(num_classes)]
        if len(class_names) != num_classes:
            raise ConfigError(f"got {len(class_names)} class names {list(class_names)} for {num_classes} classes")
        if boundary_distance_px is not None and (not math.isfinite(boundary_distance_px) or boundary_distance_px < 0):
            raise ConfigError(f"boundary_distance_px must be >= 0 or None, got {boundary_distance_px!r}")
        if band_pixels < 1:
            raise ConfigError(f"band_pixels must be at least 1, got {band_pixels}")
        self.num_classes = int(num_classes)
        self.class_names = list(class_names)
        self.ignore_value = ignore_value
        self.boundary_distance_px = boundary_distance_px
        self.keep_rows = keep_rows
        self.band_pixels = band_pixels
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated."""
        self.confusion = np.zeros((self.num_classes, self.num_classes), np.int64)
        self.boundary_confusion = np.zeros((self.num_classes, self.num_classes), np.int64)
        self.n_images = 0
        self.rows: list[dict] = []

    def update(self, truth: np.ndarray, prediction: np.ndarray, name: str | None = None) -> dict:
        """Add one image; returns its own scalar metrics (name, pixels, metrics, boundary metrics).

        Raises:
            DataError: shapes differ, or a value is out of range for the classes.
        """
        truth, prediction = np.asarray(truth), np.asarray(prediction)
        what = f" for {name}" if name is not None else ""
        if truth.shape != prediction.shape:
            raise DataError(f"prediction{what} has shape {prediction.shape} but truth is {truth.shape}")
        if truth.ndim != 2:
            raise DataError(f"truth{what} must be (H, W) class indices, got shape {truth.shape}")
        confusion = np.zeros_like(self.confusion)
        boundary = np.zeros_like(self.confusion)
        halo = 0 if self.boundary_distance_px is None else math.ceil(self.boundary_distance_px) + 1
        height, width = truth.shape
        rows = max(1, self.band_pixels // max(1, width))
        try:
            for top in range(0, height, rows):
                bottom = min(height, top + rows)
                confusion += confusion_matrix(
                    truth[top:bottom], prediction[top:bottom], self.num_classes, self.ignore_value
                )
                if self.boundary_distance_px is None:
                    continue
                # The halo rows make the band exact: boundaries up to distance_px away are seen.
                start, stop = max(0, top - halo), min(height, bottom + halo)
                band = boundary_mask(truth[start:stop], self.boundary_distance_px, self.ignore_value)
                boundary += confusion_matrix(
                    truth[top:bottom], prediction[top:bottom], self.num_classes, self.ignore_value,
                    region=band[top - start : bottom - start],
                )
        except DataError as error:
            raise DataError(f"{error}{what}") from None
        self.confusion += confusion
        self.boundary_confusion += boundary
        self.n_images += 1
        metrics = metrics_from_confusion(confusion, self.class_names)
        row = {"name": name, "n_pixels": metrics["n_pixels"]}
        row.update({key: metrics[key] for key in PER_IMAGE_METRICS})
        if self.boundary_distance_px is not None:
            row["boundary_mean_iou"] = json_float(mean_iou(boundary))
            row["boundary_mean_dice"] = json_float(mean_dice(boundary))
        row.update({f"dice_{n}": metrics["dice"][n] for n in self.class_names})
        if self.keep_rows:
            self.rows.append(row)
        return row

    def result(self) -> dict:
        """Every metric of the accumulated confusion, plus ``boundary`` and ``n_images``."""
        metrics = metrics_from_confusion(self.confusion, self.class_names)
        metrics["n_images"] = self.n_images
        if self.boundary_distance_px is not None:
            b = self.boundary_confusion
            metrics["boundary"] = {
                "distance_px": self.boundary_distance_px,
                "mean_iou": json_float(mean_iou(b)),
                "mean_dice": json_float(mean_dice(b)),
                "iou": {n: json_float(v) for n, v in zip(self.class_names, iou_per_class(b))},
                "dice": {n: json_float(v) for n, v in zip(self.class_names, dice_per_class(b))},
                "n_pixels": int(b.sum()),
                "confusion_matrix": b.tolist(),
            }
        return metrics


