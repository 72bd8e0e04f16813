"""Low-resolution labels: one label per block of pixels, and the class shares inside each block.

Zhao et al. (2019), "Label Super Resolution with Inter-Instance Loss": every
block ``X_k`` of an image carries one low-resolution label ``z`` (for them a
binned cancer probability); what is known of the pixels is only the expected
share of each high-resolution class in blocks with that label (their Table 1).
These numpy helpers derive block shares from dense masks, bin them into block
labels for experiments, and cut block-label maps; no TensorFlow.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from weaksegtf.errors import ConfigError, DataError

#: Block label meaning "no low-resolution label" (the block adds nothing to the loss).
UNLABELLED_BLOCK = 255


def block_grid(height_px: int, width_px: int, block_labels_shape: tuple[int, ...]) -> tuple[int, int]:
    """Block height and width in pixels for a ``(rows, cols)`` label map over an image.

    A label map of shape ``()`` or ``(1, 1)`` is one block covering the image.

    Raises:
        DataError: the image is not an exact number of blocks.

    Example:
    >>> block_grid(64, 96, (2, 3))
    (32, 32)
    """
    rows, cols = (1, 1) if len(block_labels_shape) == 0 else block_labels_shape
    if rows < 1 or cols < 1 or height_px % rows or width_px % cols:
        raise DataError(
            f"a {rows}x{cols} block-label map does not tile a {height_px}x{width_px} image; "
            f"expected image sides that are exact multiples of the map's sides"
        )
    return height_px // rows, width_px // cols


def block_class_shares(
    mask: np.ndarray, block_size_px: int | tuple[int, int], num_classes: int, ignore_value: int = 255
) -> np.ndarray:
    """Share of each class among the annotated pixels of every block of one mask.

    Eq. 1 of Zhao et al. (``c_l``, the fraction of a block's pixels of class
    ``l``), counted on a dense mask.

    Args:
        mask: uint8 ``(H, W)`` class indices; ``ignore_value`` = not annotated.
        block_size_px: int or (int, int). Block height and width; must divide ``H`` and ``W``.
        num_classes: int. Number of high-resolution classes.
        ignore_value: int. Defaults to ``255``.

    Returns:
        float64 ``(H / bh, W / bw, num_classes)``; rows sum to 1, or are NaN for
        a block without any annotated pixel.

    Raises:
        DataError: a mask value is neither a class nor ``ignore_value``, or the
            blocks do not tile the mask.

    Example:
    >>> block_class_shares(np.array([[0, 1], [1, 1]], np.uint8), 2, 2).tolist()
    [[[0.25, 0.75]]]
    """
    mask = np.asarray(mask)
    bh, bw = (block_size_px, block_size_px) if np.isscalar(block_size_px) else block_size_px
    height, width = mask.shape
    if bh < 1 or bw < 1 or height % bh or width % bw:
        raise DataError(f"{bh}x{bw} px blocks do not tile a {height}x{width} mask; expected exact multiples")
    bad = np.unique(mask[(mask >= num_classes) & (mask != ignore_value)])
    if bad.size:
        raise DataError(
            f"mask value {int(bad[0])} is neither a class (0..{num_classes - 1}) nor "
            f"{ignore_value} (not annotated)"
        )
    blocks = mask.reshape(height // bh, bh, width // bw, bw).transpose(0, 2, 1, 3).reshape(height // bh, width // bw, -1)
    counts = np.stack([(blocks == c).sum(-1) for c in range(num_classes)], axis=-1).astype(np.float64)
    total = counts.sum(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, counts / np.maximum(total, 1), np.nan)


def bin_shares(shares: np.ndarray, bin_edges: Sequence[float]) -> np.ndarray:
    """Block labels by binning a share: label ``i`` for ``edges[i] <= share < edges[i+1]``.

    The last bin includes its upper edge; NaN shares (blocks without annotated
    pixels) become :data:`UNLABELLED_BLOCK`. This is how the experiments turn
    dense GlaS masks into low-resolution labels (the gland fraction of each
    block, binned), as Zhao et al. bin a cancer probability.

    Example:
    >>> bin_shares(np.array([0.0, 0.2, 0.5, 1.0, np.nan]), [0, 0.25, 0.75, 1]).tolist()
    [0, 0, 1, 2, 255]
    """
    edges = np.asarray(bin_edges, dtype=np.float64)
    if edges.ndim != 1 or len(edges) < 2 or np.any(np.diff(edges) <= 0):
        raise ConfigError(f"bin_edges must be at least two increasing numbers, got {list(bin_edges)}")
    shares = np.asarray(shares, dtype=np.float64)
    labels = np.clip(np.searchsorted(edges, shares, side="right") - 1, 0, len(edges) - 2)
    return np.where(np.isnan(shares), UNLABELLED_BLOCK, labels).astype(np.uint8)


def block_labels_from_masks(
    masks: Sequence[np.ndarray],
    block_size_px: int,
    bin_edges: Sequence[float],
    classes: Sequence[int] = (1,),
    num_classes: int = 2,
    ignore_value: int = 255,
) -> list[np.ndarray]:
    """One block-label map per mask: the share of ``classes`` in each block, binned.

    Args:
        masks: sequence of uint8 ``(H, W)`` masks, sides multiples of ``block_size_px``.
        block_size_px: int. Block side in pixels.
        bin_edges: increasing floats in [0, 1]; ``len(bin_edges) - 1`` labels.
        classes: sequence of int. Classes whose summed share is binned. Defaults to ``(1,)``.
        num_classes: int. Number of classes in the masks. Defaults to ``2``.
        ignore_value: int. Defaults to ``255``.

    Returns:
        list of uint8 ``(H / b, W / b)`` label maps (255 = block without annotation).

    Example:
    >>> block_labels_from_masks([np.eye(4, dtype=np.uint8)], 2, [0, 0.3, 1])[0].tolist()
    [[1, 0], [0, 1]]
    """
    maps = []
    for mask in masks:
        shares = block_class_shares(mask, block_size_px, num_classes, ignore_value)
        maps.append(bin_shares(shares[..., list(classes)].sum(-1), bin_edges))
    return maps
