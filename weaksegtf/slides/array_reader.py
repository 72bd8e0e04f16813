"""A slide held in memory as a numpy array, with an optional built pyramid."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from weaksegtf.errors import ConfigError, SlideError
from weaksegtf.slides.slide_reader import RGBImage, SlideReader, composite_over_white


def as_rgb_uint8(array: np.ndarray, name: str) -> RGBImage:
    """Bring a grey, RGB or RGBA uint8 array to ``(H, W, 3)`` RGB.

    RGBA is composited over white (empty glass).
    """
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise SlideError(f"image {name} has pixel type {array.dtype}; expected uint8")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2:
        return np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim == 3 and array.shape[2] == 4:
        return composite_over_white(array)
    if array.ndim != 3 or array.shape[2] != 3:
        raise SlideError(
            f"image {name} has shape {tuple(array.shape)}; expected (H, W), (H, W, 3) or (H, W, 4)"
        )
    return np.ascontiguousarray(array)


class ArrayReader(SlideReader):
    """A slide from an in-memory RGB array, for tests and small images.

    Args:
        image: uint8 array ``(H, W, 3)`` (grey and RGBA are converted). Level 0.
        mpp: float. Microns per pixel of ``image``.
        downsamples: sequence of int. Downsample factor of each level to
            build, starting with 1. Defaults to ``(1,)`` (no pyramid).
        path: str or path, optional. File the array came from, for messages.
            Defaults to ``None``.

    Example:
    >>> reader = ArrayReader(np.zeros((512, 512, 3), np.uint8), mpp=0.5, downsamples=(1, 4))
    >>> reader.level_dimensions
    ((512, 512), (128, 128))
    """

    def __init__(
        self,
        image: np.ndarray,
        mpp: float,
        downsamples: Sequence[int] = (1,),
        path: Path | str | None = None,
    ) -> None:
        super().__init__(path, mpp)
        base = as_rgb_uint8(image, self.name)
        if base.shape[0] == 0 or base.shape[1] == 0:
            raise SlideError(f"image {self.name} is empty: shape {base.shape}")
        factors = [int(d) for d in downsamples]
        if not factors or factors[0] != 1 or any(b <= a for a, b in zip(factors, factors[1:])):
            raise ConfigError(
                f"downsamples must start at 1 and increase, got {tuple(downsamples)}"
            )
        height, width = base.shape[:2]
        self._levels = [base]
        for factor in factors[1:]:
            size = (max(1, -(-width // factor)), max(1, -(-height // factor)))
            self._levels.append(cv2.resize(base, size, interpolation=cv2.INTER_AREA))

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        return tuple((level.shape[1], level.shape[0]) for level in self._levels)

    def _read_region(
        self, location: tuple[int, int], level: int, size: tuple[int, int]
    ) -> RGBImage:
        downsample = self.level_downsamples[level]
        data = self._levels[level]
        x = int(np.floor(location[0] / downsample))
        y = int(np.floor(location[1] / downsample))
        width, height = size
        out = np.full((height, width, 3), 255, dtype=np.uint8)
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + width, data.shape[1]), min(y + height, data.shape[0])
        if x1 > x0 and y1 > y0:
            out[y0 - y : y1 - y, x0 - x : x1 - x] = data[y0:y1, x0:x1]
        return out

    def _close(self) -> None:
        self._levels = []
