"""Writers of small real slide files for the slide and preprocessing tests.

Each slide is a tiled TIFF written with tifffile, one page per pyramid level,
with its resolution in pixels per centimetre, so OpenSlide opens it as
``generic-tiff`` and reports its mpp, like a scanner's file.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import tifffile


def pyramid_levels(base: np.ndarray, n_levels: int, mark_levels: bool = False) -> list[np.ndarray]:
    """``base`` halved ``n_levels - 1`` times; ``mark_levels`` puts the level
    index in every pixel's blue channel so a test can tell which level was read."""
    levels = [base]
    for _ in range(1, n_levels):
        previous = levels[-1]
        size = (-(-previous.shape[1] // 2), -(-previous.shape[0] // 2))
        levels.append(cv2.resize(previous, size, interpolation=cv2.INTER_AREA))
    if mark_levels:
        levels = [level.copy() for level in levels]
        for index, level in enumerate(levels):
            level[:, :, 2] = index
    return levels


def write_tiled_tiff(
    path: Path,
    levels: list[np.ndarray],
    mpp: float | None,
    unit: str = "CENTIMETER",
    tile: int = 256,
) -> Path:
    """Write ``levels`` (finest first) as a tiled TIFF; ``mpp=None`` writes no resolution."""
    with tifffile.TiffWriter(path) as writer:
        for index, level in enumerate(levels):
            extra = {}
            if mpp is not None:
                per_unit = (1e4 if unit == "CENTIMETER" else 25400.0) / (mpp * 2**index)
                extra = {"resolution": (per_unit, per_unit), "resolutionunit": unit}
            writer.write(
                level,
                tile=(tile, tile),
                photometric="rgb",
                compression="zlib",
                subfiletype=0 if index == 0 else 1,
                metadata=None,
                **extra,
            )
    return path


def tissue_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """White glass with a pink-purple 'tissue' rectangle filling its middle.

    The tissue spans rows ``height//4 .. 3*height//4`` and columns
    ``width//8 .. 7*width//8``, with mild texture so it is not a flat colour.
    """
    rng = np.random.default_rng(seed)
    image = np.full((height, width, 3), 245, dtype=np.uint8)
    noise = rng.integers(-15, 16, size=(height // 2, width - 2 * (width // 8), 3))
    tissue = np.clip(np.array([190, 110, 170]) + noise, 0, 255).astype(np.uint8)
    image[height // 4 : height // 4 + tissue.shape[0], width // 8 : width // 8 + tissue.shape[1]] = tissue
    return image
