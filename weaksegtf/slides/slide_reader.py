"""The small reader interface every slide back-end implements (dlup style).

A reader knows its pyramid (level count, level sizes, downsamples), its
resolution in micrometres per pixel (mpp) and how to read an RGB region. On
top of that, :meth:`SlideReader.read_at_mpp` reads a region at any target
resolution from the closest pyramid level that is at least as fine as the
target, and resizes only the rest of the way, so a 1.25x tile of a 40x slide
is never read at full resolution and shrunk.

Coordinates follow OpenSlide: ``location`` is the ``(x, y)`` top-left corner in
level-0 pixels, ``size`` is ``(width, height)`` in pixels of the level read.
Images are ``(height, width, 3)`` RGB uint8 arrays. Parts of a region that lie
outside the slide come back white, the colour of empty glass.
"""

from __future__ import annotations

import abc
import math
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np
import numpy.typing as npt

from weaksegtf.errors import ConfigError, SlideError

RGBImage = npt.NDArray[np.uint8]

#: A level whose mpp exceeds the target by less than this fraction still counts
#: as "not coarser than the target": OpenSlide reports downsamples such as
#: 4.0009 for a level that is meant to be exactly 4x.
MPP_TOLERANCE = 0.01

#: Resolution tags giving an mpp outside this range are treated as missing:
#: image editors write 72 or 96 dpi by default (about 350 or 265 um per pixel),
#: which is never the resolution of a microscope image.
PLAUSIBLE_MPP_RANGE = (0.02, 50.0)

_MICRONS_PER_UNIT = {"centimeter": 1e4, "inch": 25400.0}

#: Largest level region :meth:`SlideReader.read_at_mpp` reads at once when it
#: shrinks; bigger regions (a thumbnail of a slide without a pyramid) are read
#: and shrunk in bands of rows, so memory follows the result, not the source.
READ_BAND_PIXELS = 2**24


def mpp_from_resolution(pixels_per_unit: float, unit: str) -> float | None:
    """Micrometres per pixel from a TIFF resolution tag, or ``None``.

    Args:
        pixels_per_unit: float. The XResolution (or YResolution) tag value.
        unit: str. The ResolutionUnit, ``"centimeter"`` or ``"inch"``
            (case-insensitive); any other unit means there is no physical size.

    Returns:
        The mpp, or ``None`` when the unit has no physical meaning or the value
        is outside :data:`PLAUSIBLE_MPP_RANGE`.

    Example:
    >>> mpp_from_resolution(20000.0, "centimeter")
    0.5
    """
    microns = _MICRONS_PER_UNIT.get(str(unit).strip().lower())
    if microns is None or not pixels_per_unit or pixels_per_unit <= 0:
        return None
    mpp = microns / float(pixels_per_unit)
    low, high = PLAUSIBLE_MPP_RANGE
    return mpp if low <= mpp <= high else None


def missing_mpp_error(path: Path | str, looked_at: str) -> SlideError:
    """The error raised for a slide whose resolution is unknown."""
    return SlideError(
        f"slide {path} has no resolution: {looked_at}. Expected microns per pixel in the slide "
        f"metadata; pass mpp= (or --mpp on the command line) with the level-0 microns per pixel, "
        f"for example mpp=0.5 for a 20x scan or mpp=0.25 for 40x"
    )


def composite_over_white(rgba: np.ndarray) -> RGBImage:
    """Drop an alpha channel, blending transparent pixels to white glass."""
    alpha = rgba[:, :, 3]
    if alpha.min() == 255:
        return np.ascontiguousarray(rgba[:, :, :3])
    weight = alpha[:, :, None].astype(np.float32) / 255.0
    blended = rgba[:, :, :3].astype(np.float32) * weight + 255.0 * (1.0 - weight)
    return np.rint(blended).astype(np.uint8)


class SlideReader(abc.ABC):
    """Abstract whole-slide reader: pyramid geometry, mpp and RGB regions.

    Back-ends implement :attr:`level_dimensions`, :meth:`_read_region` and
    :meth:`_close`; everything else (level choice, reading at an mpp, the
    context manager) is shared.

    Args:
        path: str or path, optional. The file behind the reader, used in
            messages. Defaults to ``None`` (in-memory readers).
        mpp: float. Microns per pixel of level 0.

    Example:
    >>> with open_slide("slide.svs") as slide:  # doctest: +SKIP
    ...     tile = slide.read_at_mpp((0, 0), (128, 128), mpp=8.0)
    """

    def __init__(self, path: Path | str | None, mpp: float) -> None:
        self.path = None if path is None else Path(path)
        if not (isinstance(mpp, (int, float)) and math.isfinite(mpp) and mpp > 0):
            raise ConfigError(f"mpp of {self.name} must be a positive number, got {mpp!r}")
        self._mpp = float(mpp)
        self._closed = False

    # ------------------------------------------------------------------ geometry
    @property
    def name(self) -> str:
        """File name of the slide (or ``"<array>"`` for in-memory readers)."""
        return "<array>" if self.path is None else self.path.name

    @property
    @abc.abstractmethod
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        """``(width, height)`` of each level in pixels, finest first."""

    @property
    def level_count(self) -> int:
        """Number of pyramid levels."""
        return len(self.level_dimensions)

    @property
    def dimensions(self) -> tuple[int, int]:
        """``(width, height)`` of level 0 in pixels."""
        return self.level_dimensions[0]

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        """Downsample factor of each level relative to level 0."""
        width0, height0 = self.dimensions
        return tuple((width0 / w + height0 / h) / 2.0 for w, h in self.level_dimensions)

    @property
    def mpp(self) -> float:
        """Microns per pixel of level 0."""
        return self._mpp

    def level_mpp(self, level: int) -> float:
        """Microns per pixel of ``level``."""
        self._check_level(level)
        return self._mpp * self.level_downsamples[level]

    def size_at_mpp(self, mpp: float) -> tuple[int, int]:
        """``(width, height)`` of the whole slide at ``mpp``, at least 1 pixel each."""
        scale = self._mpp / self._check_mpp(mpp)
        width0, height0 = self.dimensions
        return max(1, int(round(width0 * scale))), max(1, int(round(height0 * scale)))

    def best_level_for_mpp(self, mpp: float) -> int:
        """The coarsest level whose mpp is not coarser than ``mpp``.

        Reading there and downscaling the rest of the way never loses detail
        and never reads more pixels than needed. A target finer than level 0
        gives level 0 (the region is then upscaled).

        Example:
        >>> # levels at 0.5, 1.0, 2.0, 4.0 um/px: 1.5 um/px reads level 1
        >>> slide.best_level_for_mpp(1.5)  # doctest: +SKIP
        1
        """
        target = self._check_mpp(mpp) * (1.0 + MPP_TOLERANCE)
        best = 0
        for level in range(self.level_count):
            if self.level_mpp(level) <= target:
                best = level
        return best

    # ------------------------------------------------------------------ reading
    def read_region(
        self, location: tuple[int, int], level: int, size: tuple[int, int]
    ) -> RGBImage:
        """Read an RGB region of one level.

        Args:
            location: (int, int). ``(x, y)`` of the top-left corner in level-0
                pixels; may be negative or beyond the slide (padded white).
            level: int. Pyramid level to read.
            size: (int, int). ``(width, height)`` in pixels of that level.

        Returns:
            uint8 array of shape ``(height, width, 3)``.

        Raises:
            SlideError: the reader is closed or the file cannot be decoded.
            ConfigError: the level or size is invalid.
        """
        self._check_open()
        self._check_level(level)
        width, height = (int(size[0]), int(size[1]))
        if width <= 0 or height <= 0:
            raise ConfigError(f"region size must be positive, got {tuple(size)} for {self.name}")
        x, y = int(location[0]), int(location[1])
        region = self._read_region((x, y), level, (width, height))
        if region.shape != (height, width, 3) or region.dtype != np.uint8:
            raise SlideError(
                f"back-end of {self.name} returned {region.shape} {region.dtype}; "
                f"expected ({height}, {width}, 3) uint8"
            )
        return region

    def read_at_mpp(
        self, location: tuple[int, int], size: tuple[int, int], mpp: float
    ) -> RGBImage:
        """Read a region at a target resolution from the best pyramid level.

        Args:
            location: (int, int). ``(x, y)`` top-left corner in level-0 pixels.
            size: (int, int). ``(width, height)`` of the result in pixels at
                ``mpp``.
            mpp: float. Target microns per pixel.

        Returns:
            uint8 array of shape ``(height, width, 3)``.
        """
        width, height = int(size[0]), int(size[1])
        level = self.best_level_for_mpp(mpp)
        scale = self._check_mpp(mpp) / self.level_mpp(level)
        if abs(scale - 1.0) <= MPP_TOLERANCE:
            return self.read_region(location, level, (width, height))
        level_size = (max(1, int(round(width * scale))), max(1, int(round(height * scale))))
        # INTER_AREA averages the source pixels when shrinking (no aliasing);
        # a target finer than level 0 is the only case that enlarges.
        interpolation = cv2.INTER_AREA if scale > 1.0 else cv2.INTER_LINEAR
        if scale <= 1.0 or level_size[0] * level_size[1] <= READ_BAND_PIXELS:
            region = self.read_region(location, level, level_size)
            return cv2.resize(region, (width, height), interpolation=interpolation)
        out = np.empty((height, width, 3), np.uint8)
        band = max(1, int(READ_BAND_PIXELS // (level_size[0] * scale)))  # result rows per band
        downsample = self.level_downsamples[level]
        for top in range(0, height, band):
            bottom = min(height, top + band)
            y0, y1 = int(round(top * scale)), int(round(bottom * scale))
            y1 = max(y1, y0 + 1)
            rows = self.read_region((location[0], int(round(location[1] + y0 * downsample))), level,
                                    (level_size[0], y1 - y0))
            out[top:bottom] = cv2.resize(rows, (width, bottom - top), interpolation=interpolation)
        return out

    def read_full_at_mpp(self, mpp: float) -> RGBImage:
        """The whole slide at ``mpp`` (use a coarse mpp: it is held in memory)."""
        return self.read_at_mpp((0, 0), self.size_at_mpp(mpp), mpp)

    def thumbnail(self, max_size_px: int = 1024) -> tuple[RGBImage, float]:
        """The whole slide with its longer side at most ``max_size_px``.

        Returns:
            The RGB thumbnail and its mpp.
        """
        width0, height0 = self.dimensions
        mpp = self._mpp * max(1.0, max(width0, height0) / float(max_size_px))
        return self.read_full_at_mpp(mpp), mpp

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Release the file handle; further reads raise :class:`SlideError`."""
        if not self._closed:
            self._closed = True
            self._close()

    def __enter__(self) -> "SlideReader":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.name!r}, mpp={self._mpp:g}, "
            f"level_dimensions={self.level_dimensions})"
        )

    # ------------------------------------------------------------------ back-end hooks
    @abc.abstractmethod
    def _read_region(
        self, location: tuple[int, int], level: int, size: tuple[int, int]
    ) -> RGBImage:
        """Back-end read; arguments are already validated."""

    def _close(self) -> None:
        """Back-end cleanup (nothing by default)."""

    # ------------------------------------------------------------------ checks
    def _check_open(self) -> None:
        if self._closed:
            raise SlideError(f"slide {self.name} is closed; open it again to read from it")

    def _check_level(self, level: int) -> None:
        if not 0 <= int(level) < self.level_count:
            raise ConfigError(
                f"level {level} does not exist in {self.name}; expected 0 to {self.level_count - 1}"
            )

    def _check_mpp(self, mpp: float) -> float:
        if not (isinstance(mpp, (int, float, np.floating)) and math.isfinite(mpp) and mpp > 0):
            raise ConfigError(f"target mpp must be a positive number, got {mpp!r}")
        return float(mpp)
