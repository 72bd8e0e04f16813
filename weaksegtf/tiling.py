"""Tile grids as pure functions of sizes and strides (no I/O, no TensorFlow).

The same grid is used to cut training patches from images and, later, to
schedule tiles for whole-slide inference, so it lives in one place.
"""

from __future__ import annotations

import numpy as np

from weaksegtf.errors import ConfigError


def tile_origins(length_px: int, tile_size_px: int, stride_px: int) -> np.ndarray:
    """Start offsets of tiles covering ``[0, length_px)`` along one axis.

    Tiles start every ``stride_px``; when the last regular tile would not
    reach the end, one more tile is aligned flush with the end, so every pixel
    is covered and no tile sticks out. A length shorter than one tile gives
    the single origin 0 (the caller pads).

    Args:
        length_px: int. Length of the axis in pixels.
        tile_size_px: int. Tile side in pixels.
        stride_px: int. Step between tile starts; ``stride_px < tile_size_px``
            makes tiles overlap.

    Returns:
        int64 array of origins, strictly increasing.

    Example:
    >>> tile_origins(300, 128, 128).tolist()
    [0, 128, 172]
    """
    if tile_size_px <= 0 or stride_px <= 0:
        raise ConfigError(
            f"tile_size_px and stride_px must be positive, got {tile_size_px} and {stride_px}"
        )
    if length_px <= tile_size_px:
        return np.zeros(1, dtype=np.int64)
    last = length_px - tile_size_px
    origins = np.arange(0, last + 1, stride_px, dtype=np.int64)
    if origins[-1] != last:
        origins = np.append(origins, last)
    return origins


def tile_grid(
    height_px: int, width_px: int, tile_size_px: int, stride_px: int | None = None
) -> np.ndarray:
    """Top-left ``(y, x)`` corners of tiles covering an image, row-major.

    Args:
        height_px: int. Image height in pixels.
        width_px: int. Image width in pixels.
        tile_size_px: int. Tile side in pixels.
        stride_px: int, optional. Step between tiles. Defaults to
            ``tile_size_px`` (no overlap, except the last tile of each axis,
            which is aligned with the image edge).

    Returns:
        int64 array of shape ``(n_tiles, 2)`` holding ``(y, x)`` per tile.

    Example:
    >>> tile_grid(200, 300, 128).tolist()
    [[0, 0], [0, 128], [0, 172], [72, 0], [72, 128], [72, 172]]
    """
    stride_px = tile_size_px if stride_px is None else stride_px
    ys = tile_origins(height_px, tile_size_px, stride_px)
    xs = tile_origins(width_px, tile_size_px, stride_px)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return np.stack([yy.ravel(), xx.ravel()], axis=1)
