"""Whole-image prediction with a Keras ``WeakSegmenter``, padded as ``weakseg-infer`` pads, and its scores."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from weaksegtf.constants import IMAGE_PAD_VALUE, SIZE_MULTIPLE
from weaksegtf.io import json_float
from weaksegtf.metrics.confusion import confusion_matrix, dice_per_class, iou_per_class, pixel_accuracy


def predict_image(model, image: np.ndarray, min_size_px: int = 0) -> np.ndarray:
    """Argmax mask of one image of any size, padded as ``weakseg-infer`` pads it, then cropped.

    The padding is white (:data:`IMAGE_PAD_VALUE`, an empty slide) at the
    bottom and right, up to a multiple of 16 and at least ``min_size_px``: the
    slide readers pad an image smaller than an inference tile to a whole tile
    (:func:`weaksegtf.inference.tile_scheduler.plan_tiles`), and the padding
    changes what the network sees near the image's edges. With the inference
    tile as ``min_size_px``, the scores training reports are those of deployment.
    """
    return image_logits(model, image, min_size_px).argmax(-1).astype(np.uint8)


def image_logits(model, image: np.ndarray, min_size_px: int = 0) -> np.ndarray:
    """Segmentation logits ``(H, W, C)`` of one image, padded as in :func:`predict_image`, in inference mode."""
    height, width = image.shape[:2]
    pad_y = max(min_size_px, -(-height // SIZE_MULTIPLE) * SIZE_MULTIPLE) - height
    pad_x = max(min_size_px, -(-width // SIZE_MULTIPLE) * SIZE_MULTIPLE) - width
    widths = ((0, pad_y), (0, pad_x), (0, 0))
    padded = np.pad(image, widths, constant_values=IMAGE_PAD_VALUE) if pad_y or pad_x else image
    logits = model(padded[None].astype(np.float32), training=False)["mask"]
    return np.asarray(logits)[0, :height, :width]


def evaluate_images(
    model, images: Sequence[np.ndarray], masks: Sequence[np.ndarray], class_names: Sequence[str],
    min_size_px: int = 0,
) -> tuple[dict, list[np.ndarray]]:
    """Whole-image metrics (accuracy, IoU and Dice per class and mean) and the predictions.

    ``min_size_px``: see :func:`predict_image`.
    """
    num_classes = len(class_names)
    total = np.zeros((num_classes, num_classes), np.int64)
    predictions = []
    for image, mask in zip(images, masks):
        prediction = predict_image(model, image, min_size_px)
        predictions.append(prediction)
        total += confusion_matrix(mask, prediction, num_classes)
    iou, dice = iou_per_class(total), dice_per_class(total)
    metrics = {
        "pixel_accuracy": pixel_accuracy(total),
        "mean_iou": float(np.nanmean(iou)),
        "mean_dice": float(np.nanmean(dice)),
        "iou": {name: json_float(v) for name, v in zip(class_names, iou)},
        "dice": {name: json_float(v) for name, v in zip(class_names, dice)},
        "confusion_matrix": total.tolist(),
        "n_images": len(images),
    }
    return metrics, predictions


def inference_tile_px(training_tile_px: int | None) -> int:
    """The tile ``weakseg-infer`` uses by default for a model trained on ``training_tile_px`` tiles."""
    from weaksegtf.inference.slide_segmenter import default_tiling

    return default_tiling(training_tile_px)[0]
