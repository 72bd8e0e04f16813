"""A slide's annotation as a class-index raster with its slide geometry.

An annotation mask may be stored at any level of the slide (a 1/16 label
image is common); :class:`LabelMap` knows how many level-0 pixels each of its
pixels covers and crops it, by nearest neighbour so no class index is ever
invented, for any region in level-0 coordinates.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from weaksegtf.constants import IGNORE_VALUE
from weaksegtf.errors import DataError

LabelImage = npt.NDArray[np.uint8]

#: Mask value meaning "not annotated"; the trainer ignores these pixels (the package's one ignore value).
IGNORE_INDEX = IGNORE_VALUE


def remap_labels(labels: LabelImage, mapping: Mapping[int, int]) -> LabelImage:
    """Replace class values, e.g. ``{255: 1}`` for a 0/255 binary mask."""
    table = np.arange(256, dtype=np.uint8)
    for source, target in mapping.items():
        table[int(source)] = int(target)
    return table[labels]


class LabelMap:
    """Class indices covering a whole slide at some downsample.

    Args:
        labels: uint8 ``(h, w)`` class indices.
        slide_size_px: (int, int). ``(width, height)`` of slide level 0; the
            labels cover exactly this area.
        outside_value: int. Value of pixels outside the slide. Defaults to
            255 (not annotated).
        name: str. File name, for messages. Defaults to ``"<array>"``.
        slide_name: str. The slide's file name, for messages. Defaults to ``""``.

    Example:
    >>> labels = LabelMap(np.ones((100, 80), np.uint8), slide_size_px=(800, 1000))
    >>> labels.downsample
    10.0
    """

    def __init__(
        self,
        labels: LabelImage,
        slide_size_px: tuple[int, int],
        outside_value: int = IGNORE_INDEX,
        name: str = "<array>",
        slide_name: str = "",
    ) -> None:
        if labels.ndim != 2 or labels.dtype != np.uint8:
            raise DataError(f"labels {name} must be (H, W) uint8, got {labels.shape} {labels.dtype}")
        self.labels = labels
        self.slide_size_px = (int(slide_size_px[0]), int(slide_size_px[1]))
        self.outside_value = int(outside_value)
        self.name = name
        check_aspect(labels.shape, self.slide_size_px, name, slide_name)

    @property
    def downsample_xy(self) -> tuple[float, float]:
        """Level-0 pixels per label pixel along x and y."""
        height, width = self.labels.shape
        return self.slide_size_px[0] / width, self.slide_size_px[1] / height

    @property
    def downsample(self) -> float:
        """Mean level-0 pixels per label pixel."""
        dx, dy = self.downsample_xy
        return (dx + dy) / 2.0

    def read(
        self,
        location: tuple[float, float],
        size_px: tuple[float, float],
        out_size: tuple[int, int],
    ) -> tuple[LabelImage, npt.NDArray[np.bool_]]:
        """Crop a level-0 region and resample it to ``out_size`` by nearest neighbour.

        Args:
            location: (float, float). ``(x, y)`` top-left in level-0 pixels.
            size_px: (float, float). ``(width, height)`` in level-0 pixels.
            out_size: (int, int). ``(width, height)`` of the result.

        Returns:
            ``(labels, inside)``: uint8 ``(h, w)`` class indices (outside the
            slide: ``outside_value``) and a bool map of pixels inside the slide.
        """
        out_width, out_height = int(out_size[0]), int(out_size[1])
        dx, dy = self.downsample_xy
        # Sample each output pixel at its centre, in level-0 coordinates.
        xs = location[0] + (np.arange(out_width) + 0.5) * (size_px[0] / out_width)
        ys = location[1] + (np.arange(out_height) + 0.5) * (size_px[1] / out_height)
        inside_x = (xs >= 0) & (xs < self.slide_size_px[0])
        inside_y = (ys >= 0) & (ys < self.slide_size_px[1])
        height, width = self.labels.shape
        cols = np.clip(np.floor(xs / dx).astype(np.int64), 0, width - 1)
        rows = np.clip(np.floor(ys / dy).astype(np.int64), 0, height - 1)
        crop = self.labels[rows[:, None], cols[None, :]]
        inside = inside_y[:, None] & inside_x[None, :]
        return np.where(inside, crop, np.uint8(self.outside_value)).astype(np.uint8), inside


def check_aspect(
    labels_shape: tuple[int, ...], slide_size_px: tuple[int, int], name: str, slide_name: str = ""
) -> None:
    """Refuse a mask whose aspect ratio differs from the slide's.

    A level of a pyramid is the slide size divided and rounded, so one pixel of
    slack (or 1%, whichever is larger) is allowed.

    Raises:
        DataError: naming both files and both sizes.
    """
    height, width = int(labels_shape[0]), int(labels_shape[1])
    width0, height0 = slide_size_px
    expected_width = width0 * height / height0
    expected_height = height0 * width / width0
    if abs(width - expected_width) > max(1.0, 0.01 * width) and abs(
        height - expected_height
    ) > max(1.0, 0.01 * height):
        slide = f"slide {slide_name}" if slide_name else "the slide"
        raise DataError(
            f"annotation mask {name} is {width}x{height} px (aspect {width / height:.4f}) but "
            f"{slide} is {width0}x{height0} px at level 0 (aspect {width0 / height0:.4f}); "
            f"expected a mask covering the whole slide at the size of one of its levels"
        )
