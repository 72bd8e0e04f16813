"""Pixels near true class boundaries, for boundary IoU and Dice (numpy + OpenCV, no TensorFlow).

Region metrics of large structures are dominated by their interiors, so a
prediction whose outlines are blurred or shifted by a few pixels still scores
well. Restricting the confusion matrix to a band around the true boundaries
measures the outlines themselves; label super-resolution uses the same band.
"""

from __future__ import annotations

import cv2
import numpy as np

from weaksegtf.errors import ConfigError
from weaksegtf.constants import IGNORE_VALUE
from weaksegtf.metrics.confusion import confusion_matrix

# Distances come from float32 square roots; this absorbs their rounding.
_DISTANCE_TOLERANCE_PX = 1e-4


def class_edges(mask: np.ndarray, ignore_value: int = IGNORE_VALUE) -> np.ndarray:
    """Annotated pixels with a 4-neighbour that is annotated and of another class.

    Both sides of a boundary are marked. Edges with ``ignore_value`` pixels
    and the image border are not class boundaries.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ConfigError(f"mask must be (H, W) class indices, got shape {mask.shape}")
    annotated = mask != ignore_value
    edges = np.zeros(mask.shape, bool)
    vertical = (mask[1:] != mask[:-1]) & annotated[1:] & annotated[:-1]
    edges[1:] |= vertical
    edges[:-1] |= vertical
    horizontal = (mask[:, 1:] != mask[:, :-1]) & annotated[:, 1:] & annotated[:, :-1]
    edges[:, 1:] |= horizontal
    edges[:, :-1] |= horizontal
    return edges


def boundary_mask(mask: np.ndarray, distance_px: float, ignore_value: int = IGNORE_VALUE) -> np.ndarray:
    """Annotated pixels within ``distance_px`` of a true class boundary.

    A boundary pixel is one of :func:`class_edges` (an annotated pixel with a
    4-neighbour of another annotated class). The band holds every annotated
    pixel whose centre lies at Euclidean distance ``<= distance_px`` from the
    centre of a boundary pixel, so ``distance_px=0`` gives the boundary pixels
    themselves and ``distance_px=1`` adds their 4-neighbours (diagonal
    neighbours are sqrt(2) away). Pixels equal to ``ignore_value`` are never
    in the band. A mask of a single class has no boundary: all False.

    Args:
        mask: ``(H, W)`` integer array of true classes.
        distance_px: float. Half-width of the band in pixels, ``>= 0``.
        ignore_value: int. Value of not-annotated pixels. Defaults to 255.

    Returns:
        bool array of shape ``(H, W)``.

    Example:
    >>> mask = np.zeros((5, 5), np.uint8); mask[:, 3:] = 1
    >>> boundary_mask(mask, 1).astype(int)[0].tolist()
    [0, 1, 1, 1, 1]
    """
    if not np.isfinite(distance_px) or distance_px < 0:
        raise ConfigError(f"distance_px must be a finite number >= 0, got {distance_px!r}")
    mask = np.asarray(mask)
    edges = class_edges(mask, ignore_value)
    if distance_px < 1 or not edges.any():
        # Below 1 px no other pixel centre is close enough.
        band = edges
    else:
        # cv2 measures the distance to the nearest zero pixel; DIST_MASK_PRECISE is exact Euclidean.
        not_edge = np.ascontiguousarray((~edges).astype(np.uint8))
        distance = cv2.distanceTransform(not_edge, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        band = distance <= distance_px + _DISTANCE_TOLERANCE_PX
    return band & (mask != ignore_value)


def boundary_confusion_matrix(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    num_classes: int,
    distance_px: float,
    ignore_value: int = IGNORE_VALUE,
) -> np.ndarray:
    """Confusion matrix of the pixels within ``distance_px`` of true class boundaries.

    Feed it to :func:`weaksegtf.metrics.iou_per_class` or
    :func:`weaksegtf.metrics.dice_per_class` for boundary IoU and Dice.

    Example:
    >>> truth = np.zeros((4, 4), np.uint8); truth[:, 2:] = 1
    >>> boundary_confusion_matrix(truth, np.zeros((4, 4), np.uint8), 2, 0).tolist()
    [[4, 0], [4, 0]]
    """
    region = boundary_mask(y_true, distance_px, ignore_value)
    return confusion_matrix(y_true, y_pred, num_classes, ignore_value, region=region)
