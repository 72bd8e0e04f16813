"""Write an in-memory image as a tiled, pyramidal TIFF that OpenSlide opens."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from weaksegtf.errors import ConfigError
from weaksegtf.slides.array_reader import as_rgb_uint8


def write_pyramidal_tiff(
    path: Path | str,
    image: np.ndarray,
    mpp: float,
    n_levels: int | None = None,
    tile_size_px: int = 256,
    compression: str = "zlib",
) -> list[tuple[int, int]]:
    """Write ``image`` as a tiled pyramid with resolution tags.

    Each level halves the previous one (``cv2.INTER_AREA``) and is stored as
    its own page with tiles of ``tile_size_px``; the resolution is written in
    pixels per centimetre, so OpenSlide opens the file as ``generic-tiff`` and
    reports ``openslide.mpp-x``.

    Args:
        path: str or path. Output ``.tif`` file.
        image: uint8 ``(H, W, 3)`` array, level 0.
        mpp: float. Microns per pixel of level 0.
        n_levels: int, optional. Number of levels. Defaults to ``None``: halve
            until the longer side fits in one tile.
        tile_size_px: int. Tile side, a multiple of 16. Defaults to 256.
        compression: str. tifffile compression name. Defaults to ``"zlib"``
            (lossless, needs no extra codec package).

    Returns:
        ``(width, height)`` of each level written.

    Example:
    >>> write_pyramidal_tiff("/tmp/s.tif", np.zeros((1024, 768, 3), np.uint8), 0.5, 3)
    [(768, 1024), (384, 512), (192, 256)]
    """
    import tifffile

    if tile_size_px <= 0 or tile_size_px % 16:
        raise ConfigError(f"tile_size_px must be a positive multiple of 16, got {tile_size_px}")
    level = as_rgb_uint8(image, str(path))
    if n_levels is None:
        n_levels = 1
        longest = max(level.shape[:2])
        while longest > tile_size_px:
            longest = -(-longest // 2)
            n_levels += 1
    sizes = []
    with tifffile.TiffWriter(path, bigtiff=level.nbytes > 2**31) as writer:
        for index in range(n_levels):
            if index:
                height, width = level.shape[:2]
                size = (max(1, -(-width // 2)), max(1, -(-height // 2)))
                level = cv2.resize(level, size, interpolation=cv2.INTER_AREA)
            pixels_per_cm = 1e4 / (mpp * 2**index)
            writer.write(
                level,
                tile=(tile_size_px, tile_size_px),
                photometric="rgb",
                compression=compression,
                resolution=(pixels_per_cm, pixels_per_cm),
                resolutionunit="CENTIMETER",
                subfiletype=0 if index == 0 else 1,
                metadata=None,
            )
            sizes.append((level.shape[1], level.shape[0]))
    return sizes
