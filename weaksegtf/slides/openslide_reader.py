"""Whole-slide files through OpenSlide (.svs, .ndpi, .mrxs, generic tiled TIFF, ...)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from weaksegtf.errors import SlideError
from weaksegtf.slides.slide_reader import (
    RGBImage,
    SlideReader,
    composite_over_white,
    missing_mpp_error,
    mpp_from_resolution,
)

_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def _first_truncation(path: Path) -> str | None:
    """Walk a TIFF's IFD chain and image data; say where it runs past the end.

    tifffile only logs a broken IFD chain, so the chain is walked here by hand
    (classic and BigTIFF, either byte order).
    """
    import struct

    import tifffile

    size_bytes = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(16)
        order = "<" if head[:2] == b"II" else ">"
        big = head[2:4] in (b"+\x00", b"\x00+")
        offset = struct.unpack(order + ("Q" if big else "I"), head[8:16] if big else head[4:8])[0]
        entry_size, count_format, next_format = (20, "Q", "Q") if big else (12, "H", "I")
        count_size = struct.calcsize(count_format)
        next_size = struct.calcsize(next_format)
        seen: set[int] = set()
        while offset and offset not in seen:
            seen.add(offset)
            if offset + count_size > size_bytes:
                return f"directory {len(seen)} starts at byte {offset}, past the end"
            handle.seek(offset)
            (count,) = struct.unpack(order + count_format, handle.read(count_size))
            end = offset + count_size + count * entry_size + next_size
            if end > size_bytes:
                return f"directory {len(seen)} ends at byte {end}, past the end"
            handle.seek(offset + count_size + count * entry_size)
            (offset,) = struct.unpack(order + next_format, handle.read(next_size))
    logger = logging.getLogger("tifffile")
    level = logger.level
    logger.setLevel(logging.CRITICAL)  # its warnings would only repeat what is returned
    try:
        with tifffile.TiffFile(path) as tif:
            for page in tif.pages:
                last = max(
                    (o + c for o, c in zip(page.dataoffsets, page.databytecounts)), default=0
                )
                if last > size_bytes:
                    return f"image data runs to byte {last}"
    finally:
        logger.setLevel(level)
    return None


def describe_unopenable(path: Path) -> str:
    """Why OpenSlide could not open ``path``, in words a user can act on.

    OpenSlide answers "unsupported or missing image file" both for files that
    are not slides and for slides cut short, so the file is sniffed: a TIFF
    whose directories or data run past the end of the file is truncated.
    """
    size_bytes = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(4)
    if head in _TIFF_MAGICS:
        try:
            truncation = _first_truncation(path)
        except Exception as error:  # noqa: BLE001 - the parser's reason is the message
            truncation = str(error) or type(error).__name__
        if truncation:
            return f"it is corrupt or truncated: {truncation} of a {size_bytes}-byte file"
        return (
            "it is a TIFF that OpenSlide does not support (for example an untiled TIFF "
            "without a pyramid)"
        )
    return (
        f"it is not a slide ({size_bytes} bytes starting with {head!r}); expected a whole-slide "
        f"format OpenSlide reads (.svs, .ndpi, .mrxs, .scn, .vms, .bif, tiled .tif) or a plain "
        f"image (.png, .jpg, .tif)"
    )


def _mpp_from_properties(properties: dict[str, str]) -> float | None:
    """Level-0 mpp from OpenSlide properties, falling back to TIFF tags."""
    values = []
    for key in ("openslide.mpp-x", "openslide.mpp-y"):
        try:
            value = float(properties[key])
        except (KeyError, ValueError):
            continue
        if value > 0:
            values.append(value)
    if values:
        return float(np.mean(values))
    try:
        resolution = float(properties["tiff.XResolution"])
    except (KeyError, ValueError):
        return None
    return mpp_from_resolution(resolution, properties.get("tiff.ResolutionUnit", ""))


class OpenSlideReader(SlideReader):
    """A whole-slide file read through OpenSlide.

    Args:
        path: str or path. Any format OpenSlide reads.
        mpp: float, optional. Level-0 microns per pixel; overrides the slide's
            own. Defaults to ``None`` (``openslide.mpp-x``/``-y``, then TIFF
            resolution tags).

    Raises:
        SlideError: the file is missing, not a slide, corrupt or truncated,
            or has no mpp and none was given.

    Example:
    >>> with OpenSlideReader("CMU-1-Small-Region.svs") as slide:  # doctest: +SKIP
    ...     slide.mpp, slide.dimensions
    (0.499, (2220, 2967))
    """

    def __init__(self, path: Path | str, mpp: float | None = None) -> None:
        import openslide

        path = Path(path)
        if not path.exists():
            raise SlideError(f"slide {path} does not exist")
        try:
            handle = openslide.OpenSlide(str(path))
        except openslide.OpenSlideUnsupportedFormatError:
            raise SlideError(f"OpenSlide cannot open {path}: {describe_unopenable(path)}") from None
        except openslide.OpenSlideError as error:
            raise SlideError(
                f"slide {path} is corrupt or truncated: OpenSlide reports {error}"
            ) from None
        self._handle = handle
        self.properties: dict[str, str] = dict(handle.properties)
        if mpp is None:
            mpp = _mpp_from_properties(self.properties)
        if mpp is None:
            handle.close()
            raise missing_mpp_error(
                path, "no openslide.mpp-x property and no TIFF resolution tags in cm or inch"
            )
        super().__init__(path, mpp)
        self._dimensions = tuple((int(w), int(h)) for w, h in handle.level_dimensions)
        self._downsamples = tuple(float(d) for d in handle.level_downsamples)

    @property
    def vendor(self) -> str | None:
        """OpenSlide's format name, such as ``"aperio"`` or ``"generic-tiff"``."""
        return self.properties.get("openslide.vendor")

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        return self._dimensions

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        return self._downsamples

    def _read_region(
        self, location: tuple[int, int], level: int, size: tuple[int, int]
    ) -> RGBImage:
        import openslide

        try:
            rgba = np.asarray(self._handle.read_region(location, level, size))
        except openslide.OpenSlideError as error:
            raise SlideError(
                f"slide {self.path} is corrupt or truncated: reading {size[0]}x{size[1]} px at "
                f"{location} on level {level} failed with: {error}"
            ) from None
        return composite_over_white(rgba)

    def _close(self) -> None:
        self._handle.close()
