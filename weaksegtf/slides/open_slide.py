"""Open any slide or plain image with the right back-end."""

from __future__ import annotations

from pathlib import Path

from weaksegtf.errors import SlideError
from weaksegtf.slides.image_reader import PLAIN_IMAGE_SUFFIXES, ImageReader
from weaksegtf.slides.slide_reader import SlideReader


def open_slide(path: Path | str, mpp: float | None = None, max_pixels: int | None = None) -> SlideReader:
    """Open a whole-slide file or a plain image as a :class:`SlideReader`.

    Files OpenSlide recognises (.svs, .ndpi, .mrxs, tiled pyramidal TIFF, ...)
    go to :class:`~weaksegtf.slides.OpenSlideReader`; PNG, JPEG, BMP and
    untiled TIFF go to :class:`~weaksegtf.slides.ImageReader`.

    Args:
        path: str or path. The slide or image file.
        mpp: float, optional. Level-0 microns per pixel, overriding whatever
            the file says. Defaults to ``None`` (read it from the file).
        max_pixels: int, optional. Largest plain image decoded whole (its
            header is checked first; tiled slides are read tile by tile and
            have no limit). Defaults to ``None``: 2**28 pixels.

    Returns:
        An open reader; use it as a context manager or call ``close()``.

    Raises:
        SlideError: the file is missing, not a slide, corrupt or truncated,
            or has no mpp and ``mpp`` was not given.

    Example:
    >>> with open_slide("CMU-1-Small-Region.svs") as slide:  # doctest: +SKIP
    ...     tile = slide.read_at_mpp((0, 0), (128, 128), mpp=2.0)
    """
    import openslide

    from weaksegtf.slides.openslide_reader import OpenSlideReader

    path = Path(path)
    if not path.exists():
        raise SlideError(f"slide {path} does not exist")
    if not path.is_file():
        raise SlideError(f"slide {path} is not a file")
    suffix = path.suffix.lower()
    if suffix in PLAIN_IMAGE_SUFFIXES:
        try:
            vendor = openslide.OpenSlide.detect_format(str(path))
        except openslide.OpenSlideError:
            vendor = None
        if vendor is None:
            return ImageReader(path, mpp=mpp, max_pixels=max_pixels)
    return OpenSlideReader(path, mpp=mpp)
