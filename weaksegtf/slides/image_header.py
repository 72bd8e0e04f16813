"""An image file's declared size, read from its header before anything is decoded (decompression bombs).

A few kilobytes of deflate can declare a 30000 x 30000 image, and a 222-byte
TIFF header can declare 100000 x 100000: decoding either asks for gigabytes.
Every whole-image decode in weaksegtf first calls :func:`check_pixel_limit`,
which reads only the header (Pillow opens files lazily; tifffile parses the
first directory) and refuses images over the limit with a message naming the
file, its size and the option that raises the limit.
"""

from __future__ import annotations

import threading
from pathlib import Path

from weaksegtf.errors import SlideError

#: Default largest image decoded whole: 2**28 px (16384 x 16384), 768 MiB as RGB.
#: Larger images belong in tiled pyramidal files, which are read tile by tile.
DEFAULT_MAX_PIXELS = 2**28
_TIFF_SUFFIXES = (".tif", ".tiff")
_PIL_LOCK = threading.Lock()


def image_size_px(path: Path | str) -> tuple[int, int]:
    """``(width, height)`` an image file declares, without decoding its pixels.

    TIFF: the first page's size (tifffile reads only its directory). Other
    formats: Pillow's lazy open, which reads only the header.

    Raises:
        SlideError: the header cannot be read.
    """
    path = Path(path)
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if path.suffix.lower() in _TIFF_SUFFIXES or magic in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        import tifffile

        try:
            with tifffile.TiffFile(path) as tif:
                page = tif.pages.first
                return int(page.imagewidth), int(page.imagelength)
        except Exception as error:  # noqa: BLE001 - any parser failure means an unreadable header
            raise SlideError(f"cannot read the TIFF header of {path}: {error}; the file is corrupt or "
                             f"truncated") from None
    from PIL import Image

    with _PIL_LOCK:  # Pillow's own bomb check is a module global; ours replaces it
        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            with Image.open(path) as image:
                return int(image.size[0]), int(image.size[1])
        except Exception as error:  # noqa: BLE001 - Pillow raises many types for bad headers
            raise SlideError(f"cannot read the image header of {path}: {error}; the file is corrupt, "
                             f"truncated or not an image") from None
        finally:
            Image.MAX_IMAGE_PIXELS = limit


def check_pixel_limit(path: Path | str, max_pixels: int | None = None) -> tuple[int, int]:
    """Refuse an image whose header declares more than ``max_pixels`` pixels; return its ``(width, height)``.

    Args:
        path: str or path. The image file.
        max_pixels: int, optional. The limit. Defaults to ``None``:
            :data:`DEFAULT_MAX_PIXELS`.

    Raises:
        SlideError: the image is larger than the limit, or its header is unreadable.

    Example:
    >>> check_pixel_limit("train_1.png")  # doctest: +SKIP
    (775, 522)
    """
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else int(max_pixels)
    width, height = image_size_px(path)
    if width * height > limit:
        raise SlideError(
            f"image {path} declares {width} x {height} = {width * height:,} pixels, over the limit of "
            f"{limit:,} pixels for images decoded whole; expected a smaller image or a tiled pyramidal "
            f"slide (raise the limit with --max-pixels or max_pixels= if the file is trusted)")
    return width, height
