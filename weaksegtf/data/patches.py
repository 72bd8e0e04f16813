"""Fixed-size training tiles from variable-sized images, and resizing.

Tiles follow :func:`weaksegtf.tiling.tile_grid`, the same grid that later
schedules whole-slide inference. Images smaller than a tile are padded at
the bottom and right: images with white (255, an empty slide), masks with
their ``ignore_value``, so padding never counts as background in the loss.
"""

from __future__ import annotations

import cv2
import numpy as np

from weaksegtf.constants import IMAGE_PAD_VALUE
from weaksegtf.data.label_set import LabelSet
from weaksegtf.data.mask_set import MaskSet
from weaksegtf.errors import ConfigError
from weaksegtf.tiling import tile_grid

#: Value that pads images smaller than a tile (white, like an empty slide).
#: Longest side of a whole labelled image in the label stream (larger ones are shrunk).
DEFAULT_LABEL_MAX_SIZE_PX = 512


def pad_to_tile(array: np.ndarray, tile_size_px: int, value: int) -> np.ndarray:
    """Pad the bottom and right of ``array`` up to at least ``tile_size_px``.

    Args:
        array: array ``(H, W)`` or ``(H, W, C)``.
        tile_size_px: int. Minimum height and width after padding.
        value: int. Fill value.

    Returns:
        ``array`` itself when it is already large enough, else a padded copy.

    Example:
    >>> pad_to_tile(np.zeros((2, 3), np.uint8), 4, 9).tolist()
    [[0, 0, 0, 9], [0, 0, 0, 9], [9, 9, 9, 9], [9, 9, 9, 9]]
    """
    pad_y = max(0, tile_size_px - array.shape[0])
    pad_x = max(0, tile_size_px - array.shape[1])
    if pad_y == 0 and pad_x == 0:
        return array
    widths = [(0, pad_y), (0, pad_x)] + [(0, 0)] * (array.ndim - 2)
    return np.pad(array, widths, mode="constant", constant_values=value)


def cut_tiles(
    array: np.ndarray, tile_size_px: int, stride_px: int | None = None, pad_value: int = 0
) -> np.ndarray:
    """All tiles of one image or mask, row-major as in :func:`tile_grid`.

    Args:
        array: array ``(H, W)`` or ``(H, W, C)``.
        tile_size_px: int. Tile side in pixels.
        stride_px: int, optional. Step between tiles. Defaults to
            ``tile_size_px``.
        pad_value: int. Fill for images smaller than a tile. Defaults to 0.

    Returns:
        Array ``(N, tile_size_px, tile_size_px, ...)`` of ``array``'s dtype.

    Example:
    >>> cut_tiles(np.zeros((200, 300, 3), np.uint8), 128).shape
    (6, 128, 128, 3)
    """
    _check_tile_size(tile_size_px)
    array = pad_to_tile(array, tile_size_px, pad_value)
    grid = tile_grid(array.shape[0], array.shape[1], tile_size_px, stride_px)
    return np.stack([array[y : y + tile_size_px, x : x + tile_size_px] for y, x in grid])


def _check_tile_size(tile_size_px: int) -> None:
    if isinstance(tile_size_px, bool) or not isinstance(tile_size_px, (int, np.integer)):
        raise ConfigError(f"tile_size_px must be an int, got {tile_size_px!r}")
    if tile_size_px <= 0:
        raise ConfigError(f"tile_size_px must be positive, got {tile_size_px}")


def mask_set_to_arrays(
    mask_set: MaskSet, tile_size_px: int, stride_px: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Cut every image and mask of a mask set into aligned tiles.

    Args:
        mask_set: MaskSet. Images and masks of any size.
        tile_size_px: int. Tile side in pixels.
        stride_px: int, optional. Step between tiles. Defaults to
            ``tile_size_px``.

    Returns:
        ``(images, masks)``: uint8 ``(N, t, t, 3)`` and uint8 ``(N, t, t)``,
        with image ``i``'s tiles before image ``i + 1``'s.

    Example:
    >>> images, masks = mask_set_to_arrays(mask_set, 128)  # doctest: +SKIP
    """
    _check_tile_size(tile_size_px)
    image_tiles = [np.zeros((0, tile_size_px, tile_size_px, 3), np.uint8)]
    mask_tiles = [np.zeros((0, tile_size_px, tile_size_px), np.uint8)]
    for image, mask in zip(mask_set.images, mask_set.masks):
        image_tiles.append(cut_tiles(image, tile_size_px, stride_px, IMAGE_PAD_VALUE))
        mask_tiles.append(cut_tiles(mask, tile_size_px, stride_px, mask_set.ignore_value))
    return np.concatenate(image_tiles), np.concatenate(mask_tiles)


def label_set_to_arrays(
    label_set: LabelSet, tile_size_px: int, stride_px: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Cut every image of a label set into tiles that inherit its label.

    Args:
        label_set: LabelSet. Images of any size.
        tile_size_px: int. Tile side in pixels.
        stride_px: int, optional. Step between tiles. Defaults to
            ``tile_size_px``.

    Returns:
        ``(images, labels)``: uint8 ``(N, t, t, 3)`` and int32 ``(N,)``.

    Example:
    >>> images, labels = label_set_to_arrays(label_set, 128)  # doctest: +SKIP
    """
    _check_tile_size(tile_size_px)
    image_tiles = [np.zeros((0, tile_size_px, tile_size_px, 3), np.uint8)]
    labels = [np.zeros(0, np.int32)]
    for image, label in zip(label_set.images, label_set.labels):
        tiles = cut_tiles(image, tile_size_px, stride_px, IMAGE_PAD_VALUE)
        image_tiles.append(tiles)
        labels.append(np.full(len(tiles), label, dtype=np.int32))
    return np.concatenate(image_tiles), np.concatenate(labels)


def label_set_to_images(
    label_set: LabelSet, max_size_px: int = DEFAULT_LABEL_MAX_SIZE_PX
) -> tuple[list[np.ndarray], np.ndarray]:
    """Every labelled image as one classification patch, whole.

    Ciga & Martel's classification patch is the labelled image itself: its
    pixels are background or the labelled class (Discussion: "the majority of
    the pixels on the patch are either background or the foreground class
    assigned to that patch"). Cutting it into tiles that all inherit its label
    breaks that promise: a stroma-only tile of a malignant image would teach
    the classifier, and through it the segmentation, that stroma is malignant.
    Images whose longer side exceeds ``max_size_px`` are shrunk (keeping their
    aspect ratio) so one batch stays within memory; smaller ones pass as they are.

    Args:
        label_set: LabelSet. Images of any size, already at the training resolution.
        max_size_px: int. Longest side kept. Defaults to :data:`DEFAULT_LABEL_MAX_SIZE_PX`.

    Returns:
        ``(images, labels)``: a list of uint8 ``(H_i, W_i, 3)`` and int32 ``(N,)``.

    Example:
    >>> images, labels = label_set_to_images(label_set)  # doctest: +SKIP
    """
    _check_tile_size(max_size_px)
    images = []
    for image in label_set.images:
        longest = max(image.shape[:2])
        images.append(resize_image(image, max_size_px / longest) if longest > max_size_px else image)
    return images, np.asarray(label_set.labels, dtype=np.int32).reshape(-1)


def background_tiles(
    mask_set: MaskSet, tile_size_px: int, dominant_fraction: float = 0.9, stride_px: int | None = None
) -> np.ndarray:
    """Tiles of a mask set that the tile rule labels background (class 0).

    Image-level label sets often name only foreground classes (every GlaS grade
    is a gland class); without background-labelled patches the classifier on
    the segmentation output never learns what a patch without the class looks
    like, and pushes the segmentation to paint the class everywhere. The
    masked images supply such patches for free: a tile at least
    ``dominant_fraction`` background (section 3.3's rule) is one.

    Returns:
        uint8 ``(N, t, t, 3)``.

    Example:
    >>> tiles = background_tiles(mask_set, 128)  # doctest: +SKIP
    """
    images, labels = tile_rule_label_arrays(mask_set, tile_size_px, dominant_fraction, stride_px)
    return images[labels == 0]


def scaled_size(height_px: int, width_px: int, scale: float) -> tuple[int, int]:
    """``(height, width)`` after scaling, rounded half up, at least 1 pixel.

    Example:
    >>> scaled_size(522, 775, 0.5)
    (261, 388)
    """
    if not scale > 0:
        raise ConfigError(f"scale must be positive, got {scale}")
    return (
        max(1, int(np.floor(height_px * scale + 0.5))),
        max(1, int(np.floor(width_px * scale + 0.5))),
    )


def resize_image(image: np.ndarray, scale: float) -> np.ndarray:
    """Resize an image by ``scale`` (0.5 halves each side).

    Shrinking uses ``cv2.INTER_AREA``, which averages the covered pixels and
    so does not alias nuclei texture; enlarging uses bilinear interpolation.

    Example:
    >>> resize_image(np.zeros((522, 775, 3), np.uint8), 0.5).shape
    (261, 388, 3)
    """
    height_px, width_px = scaled_size(image.shape[0], image.shape[1], scale)
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (width_px, height_px), interpolation=interpolation)
    return resized.reshape((height_px, width_px) + image.shape[2:])


def resize_mask(mask: np.ndarray, scale: float) -> np.ndarray:
    """Resize a mask by ``scale`` with nearest neighbour, so no class is invented.

    ``INTER_NEAREST_EXACT`` samples the source pixel under each output
    pixel's centre, keeping the mask aligned with :func:`resize_image`
    (plain ``INTER_NEAREST`` shifts it by half a source pixel).

    Example:
    >>> resize_mask(np.array([[0, 1], [2, 255]], np.uint8), 2.0).tolist()[0]
    [0, 0, 1, 1]
    """
    height_px, width_px = scaled_size(mask.shape[0], mask.shape[1], scale)
    return cv2.resize(mask, (width_px, height_px), interpolation=cv2.INTER_NEAREST_EXACT)


def _check_factor(factor: int) -> None:
    if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor < 1:
        raise ConfigError(f"downsample factor must be an int of at least 1, got {factor!r}")


def downsample_mask_set(mask_set: MaskSet, factor: int) -> MaskSet:
    """A mask set with every side divided by ``factor`` (1 returns it unchanged).

    Example:
    >>> half = downsample_mask_set(mask_set, 2)  # doctest: +SKIP
    """
    _check_factor(factor)
    if factor == 1:
        return mask_set
    return MaskSet(
        images=[resize_image(image, 1.0 / factor) for image in mask_set.images],
        masks=[resize_mask(mask, 1.0 / factor) for mask in mask_set.masks],
        names=list(mask_set.names),
        ignore_value=mask_set.ignore_value,
    )


def downsample_label_set(label_set: LabelSet, factor: int) -> LabelSet:
    """A label set with every side divided by ``factor`` (1 returns it unchanged).

    Example:
    >>> half = downsample_label_set(label_set, 2)  # doctest: +SKIP
    """
    _check_factor(factor)
    if factor == 1:
        return label_set
    return LabelSet(
        images=[resize_image(image, 1.0 / factor) for image in label_set.images],
        labels=list(label_set.labels),
        names=list(label_set.names),
        class_names=label_set.class_names,
    )


def tile_rule_label_arrays(
    mask_set: MaskSet, tile_size_px: int, dominant_fraction: float = 0.9, stride_px: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Classification tiles of a mask set by the tile rule of section 3.3.

    Ciga & Martel build the classification patches of their Gleason2019 and
    DigestPath2019 experiments this way: a tile whose dominant class covers at
    least ``dominant_fraction`` becomes a label patch with that class; every
    other tile is dropped. Unlike an image-level label copied onto every tile,
    this gives background tiles the background label, which the classifier on
    the segmentation output needs (a gland grade on a stroma-only tile teaches
    it to paint glands everywhere).

    Returns:
        ``(images, labels)``: uint8 ``(N, t, t, 3)`` and int32 ``(N,)``.

    Example:
    >>> images, labels = tile_rule_label_arrays(mask_set, 128)  # doctest: +SKIP
    """
    images, masks = mask_set_to_arrays(mask_set, tile_size_px, stride_px)
    labels = tile_rule_labels(masks, dominant_fraction, mask_set.ignore_value)
    keep = labels >= 0
    return images[keep], labels[keep]


def tile_rule_labels(masks: np.ndarray, dominant_fraction: float = 0.9, ignore_value: int = 255) -> np.ndarray:
    """The section 3.3 tile rule's label of each mask tile ``(N, t, t)``, -1 for a tile it drops.

    Example:
    >>> tile_rule_labels(np.array([[[0, 0], [0, 0]], [[0, 1], [1, 2]]], np.uint8)).tolist()
    [0, -1]
    """
    from weaksegtf.preprocessing.tile_rule import LABEL, classify_tile

    decisions = [classify_tile(m, dominant_fraction, ignore_index=ignore_value) for m in masks]
    return np.array([d.label if d.kind == LABEL else -1 for d in decisions], dtype=np.int32).reshape(-1)
